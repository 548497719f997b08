// The owner dashboard in headless Chromium (playwright-core driving Debian's chromium), run by
// tests/dashboard.rs against the real server: sign in, buy from the catalog, create an agent and
// a cap rule, watch the agent's escalated order appear and approve it, pull the kill switch,
// sign out. Each page is photographed into SCREENSHOTS. Prints one JSON line of results.
//
// Environment: STOREFRONT_URL, OWNER_KEY, CHROMIUM (executable), SCREENSHOTS (directory),
// PRODUCT and CONFIGURATION (what the owner and then the agent buy: a machine when machines run
// here), RULE (the rule that makes the agent's purchase wait: its kind and form fields).
import { chromium } from "playwright-core";
import { mkdirSync } from "node:fs";
import assert from "node:assert/strict";

const base = process.env.STOREFRONT_URL;
const ownerKey = process.env.OWNER_KEY;
const shots = process.env.SCREENSHOTS;
const product = process.env.PRODUCT;
const configuration = JSON.parse(process.env.CONFIGURATION);
const { kind: ruleKind, ...ruleFields } = JSON.parse(process.env.RULE);
mkdirSync(shots, { recursive: true });

const browser = await chromium.launch({
  executablePath: process.env.CHROMIUM,
  args: ["--no-sandbox", "--disable-gpu"],
});
const context = await browser.newContext({ viewport: { width: 1280, height: 900 } });
const page = await context.newPage();
page.setDefaultTimeout(30_000);
// Confirmation dialogs (kill switch, terminate) are answered yes.
page.on("dialog", (dialog) => dialog.accept());
const external = [];
page.on("request", (request) => {
  if (!request.url().startsWith(base)) external.push(request.url());
});

const shot = (name) => page.screenshot({ path: `${shots}/${name}.png`, fullPage: true });
const results = {};

// An agent's own calls go over plain HTTP with its key, as an agent would make them.
async function api(method, path, key, body, idempotencyKey) {
  const headers = { Authorization: `Bearer ${key}` };
  if (body) headers["Content-Type"] = "application/json";
  if (idempotencyKey) headers["Idempotency-Key"] = idempotencyKey;
  const response = await fetch(base + path, { method, headers, body: body && JSON.stringify(body) });
  return { status: response.status, body: await response.json() };
}

// 1. Signing in: a page asked for without a session leads to the sign-in form, then back.
await page.goto(`${base}/dashboard/agents`);
assert.match(page.url(), /\/dashboard\/login\?next=/);
await shot("01-login");
await page.fill("#credential", "sf_live_not-a-real-key");
await page.click("button[type=submit]");
assert.match(await page.textContent(".notice.error"), /not valid/);
await page.fill("#credential", ownerKey);
await page.click("button[type=submit]");
assert.match(page.url(), /\/dashboard\/agents$/);
const cookie = (await context.cookies()).find((c) => c.name === "sf_session");
assert.ok(cookie.httpOnly, "the session cookie is HttpOnly");
assert.equal(cookie.sameSite, "Strict");
await page.goto(`${base}/dashboard`);
const balanceBefore = await page.textContent("#balance");
await shot("02-overview");

// 2. The owner buys from the catalog: a form generated from the product's fields, a quote, then
// the purchase with credits.
await page.click("nav >> text=Catalog");
await shot("03-catalog");
await page.click(`a[href="/dashboard/catalog/${product}"]`);
for (const [name, value] of Object.entries(configuration)) {
  await page.fill(`[name="cfg.${name}"]`, String(value));
}
await shot("04-product");
await page.click("#quote-form button[type=submit]");
const total = await page.textContent("#quote-total");
await shot("05-quote");
await page.click("text=/^Buy for/");
assert.match(page.url(), /\/dashboard\/orders\/ord_/);
results.owner_order = page.url().split("/").pop();
// The order page refreshes itself until the purchase is delivered.
await page.waitForSelector("#order-status:text-is('fulfilled')", { timeout: 240_000 });
await shot("06-order");
if (await page.isVisible("text=Show SSH credentials")) {
  await page.click("text=Show SSH credentials");
  results.private_key = await page.inputValue("#cred-key");
  results.ssh_port = Number(await page.textContent("#cred-port"));
  assert.match(results.private_key, /BEGIN OPENSSH PRIVATE KEY/);
  await shot("07-credentials");
  // Shown on that answer only: the order page itself never carries the key.
  await page.goto(`${base}/dashboard/orders/${results.owner_order}`);
  assert.equal(await page.isVisible("#cred-key"), false);
  await page.click("nav >> text=Machines");
  await shot("08-machines");
  await page.click("table a");
  await shot("09-machine");
}
await page.goto(`${base}/dashboard`);
assert.notEqual(await page.textContent("#balance"), balanceBefore, `paying ${total} moved the balance`);

// 3. An agent with a key and a cap rule; a rule with a missing parameter is refused with a
// message naming it.
await page.click("nav >> text=Agents");
await page.fill("#agent-name", "browser-agent");
await page.fill("#agent-description", "made in the browser test");
await page.click("text=Create agent");
assert.match(page.url(), /\/dashboard\/agents\/agt_/);
results.agent_id = page.url().split("/").pop();
await page.click("text=Create agent key");
const agentKey = await page.inputValue("#new-secret");
assert.match(agentKey, /^sf_live_/);
await page.goto(`${base}/dashboard/agents/${results.agent_id}`);
assert.equal(await page.isVisible("#new-secret"), false, "an agent key is shown once");

await page.selectOption("#rule-kind", "budget");
await page.fill("#p-max", "100000");
await page.click("text=Add rule");
assert.match(await page.textContent(".notice.error"), /period/);
await shot("10-rule-error");

await page.selectOption("#rule-kind", ruleKind);
await page.selectOption("#rule-action", "escalate");
await page.fill("#rule-name", "ask me first");
for (const [name, value] of Object.entries(ruleFields)) {
  await page.fill(`#rule-form [name="${name}"]`, value);
}
await page.click("text=Add rule");
assert.match(await page.textContent("#rules"), new RegExp(ruleKind));
await shot("11-agent");

// 4. The agent buys above its cap: the order waits for approval and appears on the approvals
// page, which refreshes itself.
await page.click("nav >> text=Approvals");
assert.ok(await page.isVisible("#no-pending"));
const order = await api("POST", "/api/v1/orders", agentKey, {
  product_id: product,
  configuration,
  payment_method: "credit",
}, `browser-${Date.now()}`);
assert.equal(order.status, 202, JSON.stringify(order.body));
assert.equal(order.body.data.order.status, "awaiting_approval");
results.agent_order = order.body.data.order.id;
await page.waitForSelector("#pending .approval", { timeout: 30_000 });
assert.match(await page.textContent("#pending"), /browser-agent/);
await shot("12-approvals");
await page.click("#pending .approval >> text=Approve");
await page.goto(`${base}/dashboard/orders/${results.agent_order}`);
await page.waitForSelector("#order-status:text-is('fulfilled')", { timeout: 240_000 });
await shot("13-approved-order");

// 5. The kill switch: the agent is suspended at once.
await page.goto(`${base}/dashboard/agents/${results.agent_id}`);
await page.fill("#kill-reason", "browser test");
await page.click("text=Pull the kill switch");
assert.equal(await page.textContent("#agent-status"), "suspended");
await shot("14-killed");
const refused = await api("GET", "/api/v1/orders", agentKey);
assert.equal(refused.status, 403);
assert.equal(refused.body.error.code, "kill_switch_active");

// 6. A form posted with the session's cookie but without its CSRF token is refused, and
// nothing is made. (The page's own scripts cannot even try: its CSP allows them no requests.)
const forged = await context.request.post(`${base}/dashboard/agents`, {
  form: { name: "forged-agent" },
  maxRedirects: 0,
});
assert.equal(forged.status(), 403);
assert.match(await forged.text(), /CSRF/);
await page.goto(`${base}/dashboard/agents`);
assert.equal(await page.isVisible("text=forged-agent"), false);

// 7. The remaining pages, and the overview on a phone.
for (const [name, path] of [
  ["15-orders", "/dashboard/orders"],
  ["16-ledger", "/dashboard/ledger"],
  ["17-keys", "/dashboard/keys"],
  ["18-top-up", "/dashboard/top-up"],
  ["19-device", "/dashboard/device"],
  ["20-agents", "/dashboard/agents"],
  ["23-events", "/dashboard/events"],
  ["24-webhooks", "/dashboard/webhooks"],
]) {
  await page.goto(base + path);
  assert.equal(await page.isVisible("h1"), true, path);
  await shot(name);
}
await page.setViewportSize({ width: 390, height: 844 });
await page.goto(`${base}/dashboard`);
const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
assert.ok(overflow <= 0, `the overview fits a phone's width (overflow ${overflow}px)`);
await shot("21-overview-phone");
await page.setViewportSize({ width: 1280, height: 900 });

// 8. Signing out ends the session.
await page.click("text=Sign out");
assert.match(page.url(), /\/dashboard\/login/);
await page.goto(`${base}/dashboard`);
assert.match(page.url(), /\/dashboard\/login/);
await shot("22-signed-out");

assert.deepEqual(external, [], "the dashboard loads nothing from elsewhere");
await browser.close();
console.log(JSON.stringify(results));
