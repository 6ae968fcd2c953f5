// Browser end-to-end run of the Hookline developer portal in headless
// Chromium, started by crates/hookline/tests/portal.rs with:
//   PORTAL_URL      base URL of the portal, such as http://127.0.0.1:8080/portal
//   WEBHOOK_URL     HTTPS endpoint of the test's verifying receiver
//   PRODUCT         name of an existing product
//   PASSWORD        password of the accounts this run signs up
//   SCREENSHOT_DIR  where the screenshots of the main pages go
//   USER_DATA_DIR   a fresh, empty Chromium profile directory
// The last line of stdout is a JSON object with the secrets the pages showed,
// which the Rust test uses to verify the webhooks the receiver recorded.

import { chromium } from "playwright-core";
import path from "node:path";

const env = (name) => {
  const value = process.env[name];
  if (!value) {
    throw new Error(`environment variable ${name} is not set`);
  }
  return value;
};

const portal = env("PORTAL_URL");
const webhookUrl = env("WEBHOOK_URL");
const product = env("PRODUCT");
const password = env("PASSWORD");
const screenshotDir = env("SCREENSHOT_DIR");
const userDataDir = env("USER_DATA_DIR");

const context = await chromium.launchPersistentContext(userDataDir, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
  ],
  viewport: { width: 1280, height: 900 },
});

const page = context.pages()[0] ?? (await context.newPage());
page.setDefaultTimeout(15_000);

const shot = (name) =>
  page.screenshot({ path: path.join(screenshotDir, `${name}.png`), fullPage: true });

const expectText = async (text) => {
  const body = await page.textContent("body");
  if (!body.includes(text)) {
    throw new Error(`page ${page.url()} does not contain ${JSON.stringify(text)}`);
  }
};

// Reloads the application page until its delivery log shows `count`
// delivered rows, for at most 30 seconds.
const waitForDelivered = async (count) => {
  for (let i = 0; i < 60; i += 1) {
    const delivered = await page.locator("td .badge.state-delivered").count();
    if (delivered >= count) {
      return;
    }
    await page.waitForTimeout(500);
    await page.reload();
  }
  throw new Error(`the delivery log did not show ${count} delivered deliveries`);
};

try {
  await page.goto(portal);
  await expectText("Webhooks from");
  await shot("01-welcome");

  await page.getByRole("link", { name: "Sign up" }).first().click();
  await page.getByLabel("Email").fill("consumer@example.com");
  await page.getByLabel("Password").fill(password);
  await shot("02-sign-up");
  await page.getByRole("button", { name: "Create account" }).click();
  await page.waitForURL(`${portal}`);
  await expectText("My applications");

  await page.goto(`${portal}/apis`);
  await expectText(product);
  await shot("03-catalogue");
  await page.getByRole("link", { name: product, exact: true }).first().click();
  await expectText("Verifying the signature");
  await shot("04-product");

  await page.getByRole("link", { name: `Subscribe to ${product}` }).click();
  await page.getByLabel("Application name").fill("Browser app");
  await page.getByLabel(/^paid:/).check();
  await page.getByLabel("Webhook URL").fill(webhookUrl);
  await page.getByRole("button", { name: "Subscribe" }).click();
  await expectText("Your signing secret");
  const firstSecret = await page.locator("#secret").inputValue();
  if (!firstSecret.startsWith("whsec_")) {
    throw new Error(`the subscription page showed ${firstSecret}, not a whsec_ secret`);
  }
  if (!(await page.locator("button.copy").isVisible())) {
    throw new Error("the copy button is not shown although JavaScript runs");
  }
  await shot("05-subscribed");

  await page.getByRole("link", { name: "Open the application" }).click();
  await page.getByRole("button", { name: "Send a test event" }).click();
  await expectText("Test event sent");
  await waitForDelivered(1);
  await page.locator("details summary", { hasText: /attempt/ }).first().click();
  await shot("06-application");

  await page.getByRole("button", { name: "Rotate secret" }).click();
  await expectText("New signing secret");
  const rotatedSecret = await page.locator("#secret").inputValue();
  await shot("07-rotated");
  await page.getByRole("link", { name: "Back to the application" }).click();
  await expectText("The previous secret also signs every webhook until");
  await page.getByRole("button", { name: "Send a test event" }).click();
  await waitForDelivered(2);

  await page.getByLabel("Your password, to show the secret").fill(password);
  await page.getByRole("button", { name: "Show secret" }).click();
  const revealedSecret = await page.locator("#secret").inputValue();

  await page.goto(`${portal}/reference`);
  await expectText("/api/v1/applications");
  await shot("08-admin-api");

  await page.goto(`${portal}/account`);
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.waitForURL(`${portal}/signin`);
  await page.goto(`${portal}/signup`);
  await page.getByLabel("Email").fill("provider@example.com");
  await page.getByLabel("Password").fill(password);
  await page.getByRole("button", { name: "Create account" }).click();
  await page.waitForURL(`${portal}`);
  await page.goto(`${portal}/provider/applications`);
  await expectText("Browser app");
  await shot("09-provider-applications");
  await page.goto(`${portal}/provider/products`);
  await shot("10-provider-products");
  await page.goto(`${portal}/provider/dead-letters`);
  await shot("11-provider-dead-letters");
  await page.goto(`${portal}/provider/over-limit`);
  await shot("12-provider-over-limit");

  console.log(JSON.stringify({ firstSecret, rotatedSecret, revealedSecret }));
} catch (error) {
  await shot("failure").catch(() => {});
  console.error(`failed on ${page.url()}: ${error.stack ?? error}`);
  process.exitCode = 1;
} finally {
  await context.close();
}
