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

test("the logs tab lists requests, shows a failed-over request's attempts, and a key's last 24 hours", async ({ page, request }) => {
  const auth = { authorization: "Bearer e2e-admin" };
  // Put the invalid key back in rotation: of three requests, one tries it first and fails over.
  const keys = await (await request.get(`${LOCKED}/admin/api/keys`, { headers: auth })).json();
  const invalid = keys.find((k: { masked: string }) => k.masked.endsWith("003"));
  await request.post(`${LOCKED}/admin/api/keys/${invalid.id}/reset`, { headers: auth });
  for (let i = 0; i < 3; i++) {
    const r = await request.post(`${LOCKED}/v1/chat/completions`, {
      headers: { authorization: "Bearer e2e-token" },
      data: { model: "gemini-2.5-flash", messages: [{ role: "user", content: "log me" }] },
    });
    expect(r.status()).toBe(200);
  }
  // The log is written in batches (every half second).
  await expect
    .poll(async () => {
      const logs = await (await request.get(`${LOCKED}/admin/api/logs?limit=500`, { headers: auth })).json();
      return logs.rows.some((r: { attempts: number }) => r.attempts === 2);
    })
    .toBe(true);

  await page.goto(`${LOCKED}/admin`);
  await expect(page.locator(".admin[data-hydrated='true']")).toBeVisible();
  await page.getByLabel("Admin token").fill("e2e-admin");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByRole("tab", { name: "Logs" }).click();
  await expect(page.locator("tr.log-row").first()).toBeVisible();

  const failedOver = page.locator("tr.log-row").filter({ has: page.locator("td:nth-child(7)", { hasText: /^2$/ }) }).first();
  await failedOver.click();
  const detail = page.locator(".log-detail");
  await expect(detail.locator(".log-message")).toContainText("API key not valid");
  await expect(detail.locator("tr.attempt")).toHaveCount(2);
  await expect(detail.locator("tr.attempt").first()).toContainText("AIza…003");
  await expect(detail.locator("tr.attempt").first()).toContainText("invalid key");
  await expect(detail.locator("tr.attempt").nth(1)).toContainText("success");

  // A filter narrows the list.
  await page.locator("#log-status").fill("200");
  await page.locator("#log-model").fill("gemini-nope");
  await page.getByRole("button", { name: "Search" }).click();
  await expect(page.getByText("No requests match.")).toBeVisible();
  await page.getByRole("button", { name: "Clear" }).click();
  await expect(page.locator("tr.log-row").first()).toBeVisible();

  // A key's last 24 hours, from the key list.
  await page.getByRole("tab", { name: "Keys" }).click();
  await page.locator("tr", { hasText: "AIza…001" }).getByRole("button", { name: "Stats" }).click();
  await expect(page.locator(".key-stats")).toContainText("AIza…001");
  await expect(page.locator(".key-stats .stat-requests")).not.toHaveText("0");
  await expect(page.locator("tr.log-row").first()).toContainText("AIza…001");
  expect(await page.content()).not.toContain("AIzaE2eKey");

  fs.mkdirSync(SHOTS, { recursive: true });
  await page.setViewportSize({ width: 1280, height: 900 });
  await failedOver.click().catch(() => {});
  await page.screenshot({ path: path.join(SHOTS, "admin-logs.png"), fullPage: true });
});
