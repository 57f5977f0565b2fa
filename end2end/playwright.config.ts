import { defineConfig, devices } from "@playwright/test";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

// The release binaries: built by `cargo leptos build --release` (scripts/test.sh does it).
const target = process.env.CARGO_TARGET_DIR ?? path.join(__dirname, "..", "target");
const bin = (name: string) => path.join(target, "release", name);
// The gateway runs from an empty folder: it must serve the whole app from the binary alone.
const empty = fs.mkdtempSync(path.join(os.tmpdir(), "gb-e2e-"));

export const MOCK = "http://127.0.0.1:39400";
export const OPEN = "http://127.0.0.1:39401";
export const LOCKED = "http://127.0.0.1:39402";

const gateway = (port: number, extra: Record<string, string>) => ({
  command: bin("gemini-balance"),
  cwd: empty,
  url: `http://127.0.0.1:${port}/healthz`,
  reuseExistingServer: false,
  timeout: 60_000,
  env: {
    GEMINI_API_KEYS: "AIzaE2eKeyOne00000000001,AIzaE2eKeyTwo00000000002,AIzaE2eKeyinvalid000003",
    KEY_REVALIDATE_SECS: "3600",
    GEMINI_BASE_URL: MOCK,
    LEPTOS_SITE_ADDR: `127.0.0.1:${port}`,
    RUST_LOG: "warn",
    ...extra,
  },
});

export default defineConfig({
  testDir: "./tests",
  timeout: 30_000,
  fullyParallel: false,
  workers: 1,
  retries: 0,
  reporter: [["list"]],
  use: {
    trace: "retain-on-failure",
    launchOptions: {
      executablePath: process.env.CHROMIUM_PATH ?? "/usr/bin/chromium",
      args: [
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
      ],
    },
  },
  projects: [{ name: "chromium", use: { ...devices["Desktop Chrome"], channel: undefined } }],
  webServer: [
    {
      command: `${bin("mock-gemini")} 127.0.0.1:39400`,
      url: `${MOCK}/mock/stats`,
      reuseExistingServer: false,
      env: { MOCK_CHUNK_DELAY_MS: "60" },
    },
    gateway(39401, {}),
    gateway(39402, { ALLOWED_TOKENS: "e2e-token", ADMIN_TOKEN: "e2e-admin" }),
  ],
});
