import { test, expect, Page } from "@playwright/test";
import * as fs from "node:fs";
import * as path from "node:path";

const MOCK = "http://127.0.0.1:39400";
const OPEN = "http://127.0.0.1:39401";
const LOCKED = "http://127.0.0.1:39402";
const SHOTS = path.join(__dirname, "..", "screenshots");

async function open(page: Page, url = OPEN) {
  await page.goto(url);
  await expect(page.locator(".app[data-hydrated='true']")).toBeVisible();
}

async function send(page: Page, text: string) {
  const box = page.getByLabel("Message", { exact: true });
  await box.fill(text);
  await box.press("Enter");
}

async function mockStats(page: Page) {
  return (await page.request.get(`${MOCK}/mock/stats`)).json();
}

test("the page is rendered on the server, then hydrates", async ({ page, request }) => {
  const html = await (await request.get(`${OPEN}/`)).text();
  expect(html).toContain("How can I help?");
  expect(html).toContain("/pkg/gemini-balance.js");
  const wasm = await request.get(`${OPEN}/pkg/gemini-balance.wasm`);
  expect(wasm.status()).toBe(200);
  expect(wasm.headers()["content-type"]).toBe("application/wasm");
  await open(page);
  expect((await request.get(`${OPEN}/no/such/page`)).status()).toBe(404);
});

test("a reply streams in token by token", async ({ page }) => {
  await open(page);
  // Every state the streaming bubble goes through is recorded in the page itself, so the test
  // does not depend on how fast Playwright can poll a loaded machine.
  await page.evaluate(() => {
    const w = window as unknown as { __seen: string[] };
    w.__seen = [];
    new MutationObserver(() => {
      const bubble = document.querySelector(".message.streaming .bubble");
      const text = bubble?.textContent?.trim() ?? "";
      if (text && w.__seen[w.__seen.length - 1] !== text) w.__seen.push(text);
    }).observe(document.body, { subtree: true, childList: true, characterData: true });
  });
  const words = "alpha beta gamma delta epsilon zeta eta theta iota kappa";
  await send(page, words);
  await expect(page.locator(".message.user .bubble").last()).toHaveText(words);
  await expect(page.locator(".message.assistant .bubble").last()).toHaveText(`Echo: ${words}`);
  await expect(page.locator(".message.streaming")).toHaveCount(0);
  const seen: string[] = await page.evaluate(() => (window as unknown as { __seen: string[] }).__seen);
  // Several partial states were visible before the reply completed, each longer than the last.
  const partial = seen.filter((t) => t.length < `Echo: ${words}`.length);
  expect(partial.length).toBeGreaterThan(3);
  for (let i = 1; i < partial.length; i++) expect(partial[i].length).toBeGreaterThan(partial[i - 1].length);
});

test("Stop aborts the reply and the upstream stream", async ({ page }) => {
  await open(page);
  const before = await mockStats(page);
  const long = Array.from({ length: 80 }, (_, i) => `w${i}`).join(" ");
  await send(page, long);
  await expect(page.locator(".message.streaming .bubble")).toContainText("w2");
  await page.getByRole("button", { name: "Stop generating" }).click();
  await expect(page.locator(".message.streaming")).toHaveCount(0);
  const reply = page.locator(".message.assistant").last();
  await expect(reply).toContainText("Stopped");
  expect((await reply.innerText()).includes("w79")).toBe(false);
  await expect.poll(async () => (await mockStats(page)).streams_cancelled).toBeGreaterThan(before.streams_cancelled);
  await expect(page.getByRole("button", { name: "Send", exact: true })).toBeVisible();
});

test("a model can be picked", async ({ page }) => {
  await open(page);
  const picker = page.getByLabel("Model", { exact: true });
  await expect(picker.locator("option[value='gemini-2.5-pro']")).toHaveCount(1);
  await picker.selectOption("gemini-2.5-pro");
  await send(page, "which model");
  await expect(page.locator(".message.assistant .bubble").last()).toHaveText("Echo: which model");
  expect((await mockStats(page)).last_path).toContain("gemini-2.5-pro");
});

test("an upstream error is shown inline with a retry button", async ({ page }) => {
  await open(page);
  await send(page, "[[block]] something");
  const error = page.locator(".error-box");
  await expect(error).toContainText("blocked");
  await expect(error.getByRole("button", { name: "Retry" })).toBeVisible();
  // Edit the message and resend: the error goes away.
  await page.getByRole("button", { name: "Edit and resend your last message" }).click();
  await expect(page.getByLabel("Message", { exact: true })).toHaveValue("[[block]] something");
  await send(page, "all good now");
  await expect(page.locator(".message.assistant .bubble").last()).toHaveText("Echo: all good now");
  await expect(page.locator(".error-box")).toHaveCount(0);
});

test("a token is asked for when the gateway requires one", async ({ page }) => {
  await open(page, LOCKED);
  const dialog = page.getByRole("dialog", { name: "Access token required" });
  await expect(dialog).toBeVisible();
  await dialog.getByLabel("Access token").fill("wrong-token");
  await dialog.getByRole("button", { name: "Continue" }).click();
  await expect(dialog.getByRole("alert")).toContainText("not accepted");
  await dialog.getByLabel("Access token").fill("e2e-token");
  await dialog.getByRole("button", { name: "Continue" }).click();
  await expect(dialog).toHaveCount(0);
  await send(page, "with a token");
  await expect(page.locator(".message.assistant .bubble").last()).toHaveText("Echo: with a token");
  // The key pool's keys never reach the browser.
  const html = await page.content();
  expect(html).not.toContain("AIzaE2eKey");
});

test("conversations survive a reload and can be managed", async ({ page }) => {
  await open(page);
  await send(page, "remember me");
  await expect(page.locator(".message.assistant .bubble").last()).toHaveText("Echo: remember me");
  await page.reload();
  await expect(page.locator(".app[data-hydrated='true']")).toBeVisible();
  await expect(page.locator(".message.user .bubble").last()).toHaveText("remember me");
  await expect(page.locator(".conversation-title", { hasText: "remember me" })).toBeVisible();
  await page.getByRole("button", { name: "+ New chat" }).click();
  await expect(page.getByText("How can I help?")).toBeVisible();
  await page.locator(".conversation-title", { hasText: "remember me" }).click();
  await expect(page.locator(".message.user .bubble").last()).toHaveText("remember me");
});

test("screenshots, desktop and phone", async ({ page }) => {
  fs.mkdirSync(SHOTS, { recursive: true });
  await page.setViewportSize({ width: 1280, height: 800 });
  await open(page);
  await send(page, "Here is a plan:\n\n1. **Rotate** keys\n2. Retry on failure\n\n| key | state |\n|---|---|\n| AIza…x7Q | active |\n\n```rust\nfn main() {\n    println!(\"hi\");\n}\n```");
  await expect(page.locator(".message.assistant .codeblock")).toBeVisible();
  await expect(page.locator(".message.streaming")).toHaveCount(0);
  await page.screenshot({ path: path.join(SHOTS, "desktop.png") });
  await page.setViewportSize({ width: 390, height: 844 });
  await page.waitForTimeout(400);
  await expect(page.getByRole("button", { name: "Show conversations" })).toBeVisible();
  await page.screenshot({ path: path.join(SHOTS, "phone.png") });
  await page.getByRole("button", { name: "Show conversations" }).click();
  await page.waitForTimeout(400);
  await page.screenshot({ path: path.join(SHOTS, "phone-sidebar.png") });
  await page.emulateMedia({ colorScheme: "dark" });
  await page.setViewportSize({ width: 1280, height: 800 });
  await page.screenshot({ path: path.join(SHOTS, "desktop-dark.png") });
});

test("code blocks can be copied and images attached", async ({ page }) => {
  await open(page);
  await send(page, "```\nlet answer = 42;\n```");
  const copy = page.locator(".message.assistant .codeblock .copy").last();
  await expect(copy).toBeVisible();
  await expect(page.locator(".message.streaming")).toHaveCount(0);
  await copy.click();
  // The button confirms the copy (headless Chromium has no system clipboard to read back).
  await expect(copy).toHaveText("Copied");

  // A 1×1 PNG, attached through the file input, travels as inline data to Gemini.
  const png = Buffer.from(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==",
    "base64",
  );
  await page.locator("input[type=file]").setInputFiles({ name: "dot.png", mimeType: "image/png", buffer: png });
  await expect(page.getByRole("img", { name: "Attachment 1" })).toBeVisible();
  await send(page, "what is in the picture");
  await expect(page.locator(".message.user img").last()).toBeVisible();
  await expect(page.locator(".message.assistant .bubble").last()).toHaveText("Echo: what is in the picture");
  const sent = (await mockStats(page)).last_body;
  const parts = sent.contents[sent.contents.length - 1].parts;
  expect(parts.some((p: any) => p.inlineData?.mimeType === "image/png" && p.inlineData.data === png.toString("base64"))).toBe(true);
});
