import { test, expect } from "@playwright/test";
import * as fs from "node:fs";
import * as path from "node:path";

const LOCKED = "http://127.0.0.1:39402";
const SHOTS = path.join(__dirname, "..", "screenshots");

test("the admin page shows a failing key with its reason and re-enables it", async ({ page, request }) => {
  // The key whose name contains "invalid" is rejected by the mock; one request marks it.
  for (let i = 0; i < 3; i++) {
    const r = await request.post(`${LOCKED}/v1/chat/completions`, {
      headers: { authorization: "Bearer e2e-token" },
      data: { model: "gemini-2.5-flash", messages: [{ role: "user", content: "hi" }] },
    });
    expect(r.status()).toBe(200);
  }
  await page.goto(`${LOCKED}/admin`);
  await expect(page.locator(".admin[data-hydrated='true']")).toBeVisible();
  await page.getByLabel("Admin token").fill("wrong");
  await page.getByRole("button", { name: "Sign in" }).click();
  await expect(page.getByRole("alert")).toContainText("Wrong admin token");
  await page.getByLabel("Admin token").fill("e2e-admin");
  await page.getByRole("button", { name: "Sign in" }).click();

  const bad = page.locator("tr.state-disabled");
  await expect(bad).toHaveCount(1);
  await expect(bad).toContainText("AIza…003");
  await expect(bad.locator(".reason")).toContainText("API key not valid");
  // No full key anywhere on the page.
  expect(await page.content()).not.toContain("AIzaE2eKey");

  // Reset puts it back in rotation.
  await bad.getByRole("button", { name: "Reset" }).click();
  await expect(page.locator("tr.state-disabled")).toHaveCount(0);
  await expect(page.locator("tr", { hasText: "AIza…003" }).locator(".badge")).toHaveText("Active");

  // Disable by hand, then enable again.
  const row = page.locator("tr", { hasText: "AIza…001" });
  await row.getByRole("button", { name: "Disable" }).click();
  await expect(row.locator(".badge")).toHaveText("Disabled by you");
  await row.getByRole("button", { name: "Enable" }).click();
  await expect(row.locator(".badge")).toHaveText("Active");

  // Add keys.
  await page.getByLabel("Add keys (one per line or comma-separated)").fill("AIzaE2eAddedKey000000004\nAIzaE2eKeyOne00000000001");
  await page.getByRole("button", { name: "Add keys" }).click();
  await expect(page.getByRole("status").first()).toContainText("Added 1 key(s), 1 already present.");
  await expect(page.locator("tbody tr")).toHaveCount(4);

  fs.mkdirSync(SHOTS, { recursive: true });
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.screenshot({ path: path.join(SHOTS, "admin.png"), fullPage: true });
});
