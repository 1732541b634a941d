// End-to-end tests of the analyst console in Debian's Chromium, driven by
// Playwright, against a real `fraudlens serve` (started by scripts/console,
// which passes its address, keys and store in the environment).
//
// Every page is also checked by axe-core (WCAG 2.1 A and AA: zero
// violations), for Content-Security-Policy reports in the console, and for
// horizontal overflow on a 390 px phone screen; screenshots of each page at
// desktop and phone sizes go to $SHOTS.

import { after, before, describe, test } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { readFileSync, mkdirSync } from "node:fs";
import { createRequire } from "node:module";
import { chromium } from "playwright-core";

const env = (name) => {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set (run scripts/console)`);
  return value;
};
const BASE = env("FRAUDLENS_URL");
const KEYS = {
  analyst: env("ANALYST_KEY"),
  admin: env("ADMIN_KEY"),
  service: env("SERVICE_KEY"),
  doomed: env("DOOMED_KEY"),
  spare: env("SPARE_KEY"),
};
const BIN = env("FRAUDLENS_BIN");
const DATABASE = env("FRAUDLENS_DATABASE");
const SHOTS = env("SHOTS");
const TX_CSV = env("TX_CSV");
mkdirSync(SHOTS, { recursive: true });

const axeSource = readFileSync(createRequire(import.meta.url).resolve("axe-core/axe.min.js"), "utf8");
const DESKTOP = { width: 1280, height: 900 };
const PHONE = { width: 390, height: 844 };
const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));

// Script payloads carried by transaction fields and notes: if any runs, it
// sets window.__pwned (or opens a dialog), which every page check looks for.
const PAYLOADS = [
  `<img src=x onerror="window.__pwned='img'">`,
  `"><script>window.__pwned='script'</script>`,
  `'><svg onload="window.__pwned='svg'">`,
  `javascript:window.__pwned='href'`,
];

let browser;

async function api(path, { key = KEYS.service, method = "GET", body } = {}) {
  const response = await fetch(BASE + path, {
    method,
    headers: { "X-API-Key": key, ...(body ? { "Content-Type": "application/json" } : {}) },
    body: body ? JSON.stringify(body) : undefined,
  });
  const text = await response.text();
  return { status: response.status, body: text ? JSON.parse(text) : null };
}

/** The simulated transactions after `since`, as the API takes them. */
function transactions(since) {
  const [header, ...lines] = readFileSync(TX_CSV, "utf8").trim().split("\n");
  const names = header.split(",");
  return lines
    .map((line) => Object.fromEntries(line.split(",").map((value, i) => [names[i], value])))
    .filter((row) => row.timestamp >= since)
    .map(({ is_fraud, fraud_scenario, ...row }) => ({ ...row, amount: Number(row.amount) }));
}

async function score(rows) {
  for (let i = 0; i < rows.length; i += 500) {
    const { status, body } = await api("/api/v1/transactions/batch", { method: "POST", body: rows.slice(i, i + 500) });
    assert.equal(status, 200, JSON.stringify(body));
  }
}

/** A page that fails the test on any dialog, page error or CSP report. */
async function newPage(context) {
  const page = await context.newPage();
  page.problems = [];
  page.on("dialog", (dialog) => {
    page.problems.push(`dialog: ${dialog.message()}`);
    dialog.dismiss();
  });
  page.on("pageerror", (error) => page.problems.push(`page error: ${error.message}`));
  // a page's own status (a 401 or 404 page) is logged by Chromium as a failed
  // load; that is expected, so failures are taken from the responses instead:
  // any sub-resource (style, script, icon, live refresh) that fails is a problem
  page.on("console", (message) => {
    if (message.type() === "error" && !/^Failed to load resource: the server responded with a status of/.test(message.text())) {
      page.problems.push(`console: ${message.text()}`);
    }
  });
  page.on("response", (response) => {
    if (response.status() >= 400 && response.request().resourceType() !== "document") {
      page.problems.push(`${response.status()} for ${response.url()}`);
    }
  });
  // (a request cut short because the test moved on is not a failure)
  page.on("requestfailed", (request) => {
    if (request.failure()?.errorText !== "net::ERR_ABORTED") {
      page.problems.push(`request failed: ${request.url()} (${request.failure()?.errorText})`);
    }
  });
  return page;
}

async function signIn(page, key) {
  await page.goto(`${BASE}/ui/login`);
  await page.fill("#key", key);
  await page.click("button[type=submit]");
}

/** Checks a page the way every page is checked: no script ran, no error, axe clean. */
async function checkPage(page, name) {
  assert.equal(await page.evaluate(() => window.__pwned ?? null), null, `${name}: a payload ran`);
  assert.deepEqual(page.problems, [], `${name}: ${page.problems.join("; ")}`);
  await page.evaluate(axeSource);
  const result = await page.evaluate(() =>
    window.axe.run(document, { runOnly: { type: "tag", values: ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"] } }),
  );
  const violations = result.violations.map(
    (v) => `${v.id} (${v.impact}): ${v.help} — ${v.nodes.map((n) => n.target.join(" ")).slice(0, 3).join(", ")}`,
  );
  assert.deepEqual(violations, [], `${name}: axe found ${violations.length} violation(s)`);
  axeResults.push({ page: name, url: page.url(), passes: result.passes.length, violations: 0 });
}

const axeResults = [];

/** Screenshots at desktop and phone sizes, and no sideways scrolling on the phone. */
async function shoot(page, name) {
  // the top of the page (at most 1,800 px of it) at desktop size, the first screen on a phone
  await page.setViewportSize(DESKTOP);
  const height = Math.min(1800, await page.evaluate(() => document.documentElement.scrollHeight));
  await page.screenshot({ path: `${SHOTS}/${name}-desktop.png`, fullPage: true, clip: { x: 0, y: 0, width: DESKTOP.width, height } });
  await page.setViewportSize(PHONE);
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  if (overflow > 0) {
    const wide = await page.evaluate(() =>
      Array.from(document.querySelectorAll("body *"))
        .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1 && !e.closest(".table-wrap"))
        .slice(0, 5)
        .map((e) => `${e.tagName.toLowerCase()}.${e.className} (${Math.round(e.getBoundingClientRect().right)}px)`),
    );
    assert.fail(`${name}: ${overflow}px of sideways scrolling at 390px, from ${wide.join(", ")}`);
  }
  await checkPage(page, `${name} (phone)`);
  await page.screenshot({ path: `${SHOTS}/${name}-phone.png` });
  await page.setViewportSize(DESKTOP);
}

async function queueRows(page) {
  return page.$$eval("table.queue tbody tr", (rows) =>
    rows.map((row) => ({
      id: row.querySelector("td.id").textContent.trim(),
      score: Number(row.querySelector(".score").textContent.trim()),
      time: row.querySelector("time")?.getAttribute("datetime"),
      status: row.querySelector("td:nth-child(8)").textContent.trim(),
    })),
  );
}

before(async () => {
  browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  // the last days of the simulation, and transactions whose fields carry script payloads
  const rows = transactions(env("SCORE_SINCE"));
  const template = rows[rows.length - 1];
  const hostile = PAYLOADS.map((payload, i) => ({
    ...template,
    transaction_id: `xss-${i}-${payload}`,
    customer_id: `cust-${payload}`,
    terminal_id: `term-${i}-${payload}`,
    channel: payload,
    amount: 4999.99,
  }));
  await score([...rows.slice(0, -200), ...hostile]);
});

after(async () => {
  await browser?.close();
  console.log(`axe-core ${JSON.parse(readFileSync(createRequire(import.meta.url).resolve("axe-core/package.json"))).version}: ` +
    `${axeResults.length} page checks, 0 violations`);
  for (const r of axeResults) console.log(`  ${r.page}: ${r.passes} rules passed, ${r.violations} violations`);
});

describe("signing in", () => {
  test("pages need a session; / leads to the console", async () => {
    const context = await browser.newContext({ viewport: DESKTOP });
    const page = await newPage(context);
    const response = await page.goto(`${BASE}/`);
    assert.equal(response.status(), 200);
    assert.match(page.url(), /\/ui\/login\?next=%2Fui%2Fqueue$/);
    await page.goto(`${BASE}/ui/cases/anything?x=1`);
    assert.match(page.url(), /\/ui\/login\?next=/);
    await checkPage(page, "sign-in");
    await shoot(page, "sign-in");
    await context.close();
  });

  test("a wrong key and a service key are refused; the form says why", async () => {
    const context = await browser.newContext({ viewport: DESKTOP });
    const page = await newPage(context);
    await signIn(page, "fl_000000000000_nope");
    assert.match(await page.textContent("#signin-error"), /not accepted/);
    assert.match(page.url(), /\/ui\/login$/);
    await signIn(page, KEYS.service);
    assert.match(await page.textContent("#signin-error"), /analyst or admin key/);
    await checkPage(page, "sign-in refused");
    assert.equal((await context.cookies()).filter((c) => c.name === "fraudlens_session").length, 0);
    await context.close();
  });

  test("an analyst key starts a session in an HttpOnly, SameSite=Strict cookie", async () => {
    const context = await browser.newContext({ viewport: DESKTOP });
    const page = await newPage(context);
    await page.goto(`${BASE}/ui/queue?sort=time_desc`);
    await page.fill("#key", KEYS.analyst);
    await page.click("button[type=submit]");
    assert.match(page.url(), /\/ui\/queue\?sort=time_desc$/, "back to the page asked for");
    const [cookie] = (await context.cookies()).filter((c) => c.name === "fraudlens_session");
    assert.ok(cookie, "a session cookie");
    assert.equal(cookie.httpOnly, true);
    assert.equal(cookie.sameSite, "Strict");
    assert.equal(cookie.path, "/ui");
    assert.ok(cookie.expires > Date.now() / 1000 + 3600, "expires in hours, not at once");
    const html = await page.content();
    assert.ok(!html.includes(KEYS.analyst.split("_")[2]), "the key's secret is nowhere in the page");
    assert.ok(!html.includes(cookie.value), "the session token is nowhere in the page");
    assert.ok(!page.url().includes(cookie.value));
    await context.close();
  });
});

describe("the review queue", () => {
  let context;
  let page;
  before(async () => {
    context = await browser.newContext({ viewport: DESKTOP });
    page = await newPage(context);
    await signIn(page, KEYS.analyst);
  });
  after(async () => context.close());

  test("pending cases come worst first, with counts per status", async () => {
    await page.goto(`${BASE}/ui/queue`);
    const rows = await queueRows(page);
    assert.ok(rows.length >= 10, `only ${rows.length} cases`);
    const scores = rows.map((r) => r.score);
    assert.deepEqual(scores, [...scores].sort((a, b) => b - a), "worst first");
    assert.ok(rows.every((r) => r.status === "pending review"));
    const pending = Number(await page.textContent(".tabs a[aria-current=page] .count"));
    assert.ok(pending >= rows.length);
    const csp = (await page.request.get(`${BASE}/ui/queue`)).headers()["content-security-policy"];
    assert.ok(csp.includes("script-src 'self'") && !csp.includes("unsafe-inline") && !csp.includes("unsafe-eval"), csp);
    await checkPage(page, "queue");
    await shoot(page, "queue");
  });

  test("filters: minimum score, sort by time, entity, time range, and cursor paging", async () => {
    await page.goto(`${BASE}/ui/queue`);
    await page.fill("#f-score", "0.9");
    await page.click("form.filters button[type=submit]");
    let rows = await queueRows(page);
    assert.ok(rows.length > 0 && rows.every((r) => r.score >= 0.9), JSON.stringify(rows.map((r) => r.score)));

    await page.goto(`${BASE}/ui/queue?status=all&sort=time_desc`);
    rows = await queueRows(page);
    const times = rows.map((r) => r.time);
    const ms = times.map((t) => Date.parse(t));
    assert.deepEqual(ms, [...ms].sort((a, b) => b - a), "newest first");
    assert.equal(rows.length, 50, "a full page");
    await page.click("a[rel=next]");
    const next = await queueRows(page);
    assert.ok(next.length > 0);
    assert.ok(Date.parse(next[0].time) <= ms[ms.length - 1], "the next page continues where the first ended");
    assert.equal(next.filter((r) => rows.some((s) => s.id === r.id)).length, 0, "no row twice");

    const entity = await page.textContent("table.queue tbody tr td:nth-child(4) a");
    await page.click("table.queue tbody tr td:nth-child(4) a");
    rows = await queueRows(page);
    assert.ok(rows.length > 0);
    const entities = await page.$$eval("table.queue tbody tr td:nth-child(4)", (cells) => cells.map((c) => c.textContent.trim()));
    assert.ok(entities.every((e) => e === entity.trim()), `only ${entity}'s cases`);

    const lastTime = times[0];
    await page.goto(`${BASE}/ui/queue?status=all&sort=time_desc`);
    await page.fill("#f-from", lastTime.slice(0, 16));
    await page.click("form.filters button[type=submit]");
    rows = await queueRows(page);
    const from = Date.parse(`${lastTime.slice(0, 16)}:00Z`);
    assert.ok(rows.length > 0 && rows.every((r) => Date.parse(r.time) >= from), "from the time given on");

    await page.goto(`${BASE}/ui/queue?min_score=high`);
    assert.match(await page.textContent("p.error"), /not a number/);
    await checkPage(page, "queue with a bad filter");
  });

  test("on a phone the filters start folded and open with /", async () => {
    await page.setViewportSize(PHONE);
    await page.goto(`${BASE}/ui/queue`);
    assert.equal(await page.$eval("#filters", (d) => d.open), false);
    await page.keyboard.press("/");
    assert.equal(await page.$eval("#filters", (d) => d.open), true);
    assert.equal(await page.evaluate(() => document.activeElement.id), "f-entity");
    await page.goto(`${BASE}/ui/queue?min_score=0.5`);
    assert.equal(await page.$eval("#filters", (d) => d.open), true, "open when a filter is set");
    await page.setViewportSize(DESKTOP);
    await page.goto(`${BASE}/ui/queue`);
    assert.equal(await page.$eval("#filters", (d) => d.open), true, "open on a desktop");
  });

  test("keyboard: j/k move, x marks, o opens", async () => {
    await page.goto(`${BASE}/ui/queue`);
    const rows = await queueRows(page);
    await page.keyboard.press("j");
    await page.keyboard.press("j");
    await page.keyboard.press("k");
    await page.keyboard.press("j");
    const current = await page.$eval("tr.current td.id", (td) => td.textContent.trim());
    assert.equal(current, rows[1].id);
    await page.keyboard.press("x");
    assert.equal(await page.$eval("tr.current input[type=checkbox]", (box) => box.checked), true);
    await page.keyboard.press("o");
    await page.waitForURL(/\/ui\/cases\//);
    assert.equal((await page.textContent("h1 .id")).trim(), rows[1].id);
  });

  test("bulk review: several cases, one status and note", async () => {
    await page.goto(`${BASE}/ui/queue?sort=time_asc`);
    const rows = (await queueRows(page)).slice(0, 3);
    for (const row of rows) {
      await page.check(`table.queue tbody input[type=checkbox][value="${row.id}"]`);
    }
    await page.selectOption("#bulk-status", "false_positive");
    await page.fill("#bulk-note", "bulk: known customer travelling");
    await page.click("form.bulk button[type=submit]");
    assert.match(await page.textContent("p.notice"), /Updated 3 cases/);
    assert.match(page.url(), /sort=time_asc/, "back to the same filters");
    for (const row of rows) {
      const { body } = await api(`/api/v1/transactions/${encodeURIComponent(row.id)}`, { key: KEYS.analyst });
      assert.equal(body.review_status, "false_positive");
      assert.equal(body.label, "legit");
      assert.equal(body.history.at(-1).note, "bulk: known customer travelling");
      assert.match(body.history.at(-1).actor, /^analyst-ana/);
    }
  });

  test("live refresh: new flagged decisions are announced without a reload", async () => {
    await page.goto(`${BASE}/ui/queue`);
    assert.equal(await page.textContent("#live"), "");
    const template = transactions(env("SCORE_SINCE")).at(-1);
    const fresh = [1, 2, 3].map((i) => ({ ...template, transaction_id: `live-${i}`, amount: 4800 + i }));
    const { status, body } = await api("/api/v1/transactions/batch", { method: "POST", body: fresh });
    assert.equal(status, 200);
    const flagged = body.results.filter((r) => r.decision && r.decision.decision !== "approve").length;
    assert.equal(flagged, 3, `the three large amounts are flagged: ${JSON.stringify(body.results)}`);
    await page.waitForFunction(() => /new case/.test(document.getElementById("live").textContent), null, { timeout: 15000 });
    const text = await page.textContent("#live");
    assert.match(text, /^\d+ new cases? — show$/);
    const count = Number(text.split(" ")[0]);
    assert.ok(count >= 3, `at least the three new cases: ${text}`);
    await page.click("#live a");
    assert.match(page.url(), /\/ui\/queue$/, "the same list, drawn again");
    await page.goto(`${BASE}/ui/queue?sort=time_desc`);
    const ids = (await queueRows(page)).map((r) => r.id);
    for (const id of ["live-1", "live-2", "live-3"]) assert.ok(ids.includes(id), `${id} is pending`);
  });
});

describe("a case", () => {
  let context;
  let page;
  before(async () => {
    context = await browser.newContext({ viewport: DESKTOP });
    page = await newPage(context);
    await signIn(page, KEYS.analyst);
  });
  after(async () => context.close());

  test("decision, reasons chart, usual ranges, timeline, transaction", async () => {
    await page.goto(`${BASE}/ui/queue`);
    await page.click("table.queue tbody tr:first-child td.id a");
    await page.waitForURL(/\/ui\/cases\//);
    const facts = await page.textContent("dl.facts");
    assert.match(facts, /Fraud probability\s*\d+\.\d %/);
    assert.match(facts, /Model\s*gbdt-/);
    const bars = await page.$$eval("svg.reasons rect", (rects) => rects.map((r) => Number(r.getAttribute("width"))));
    assert.ok(bars.length >= 3 && bars.every((w) => w >= 1), `reason bars ${bars}`);
    const usual = await page.$$eval("table.usual tbody tr", (rows) => rows.map((r) => r.textContent));
    assert.ok(usual.length >= 2 && /amount/.test(usual[0]), usual.join(" | "));
    const dots = await page.$$("svg.timeline circle");
    assert.ok(dots.length >= 2, "the entity's transactions on the timeline");
    assert.equal((await page.$$("svg.timeline circle.this")).length, 1, "this case marked once");
    const related = await page.textContent("section[aria-labelledby=h-related]");
    assert.match(related, /On terminal term_\d+, the 3 days before/);
    assert.ok((await page.$$("section[aria-labelledby=h-related] table tbody tr")).length >= 1, "who else used the terminal");
    await checkPage(page, "case");
    await shoot(page, "case");
  });

  test("a status change with a note shows in the audit trail and as a label", async () => {
    await page.goto(`${BASE}/ui/queue`);
    const [row] = await queueRows(page);
    await page.click(`table.queue tbody tr:first-child td.id a`);
    await page.check("#s-confirmed_fraud");
    await page.fill("#note", "card holder confirmed: not their purchase");
    await page.click(".review-form button[type=submit]");
    assert.match(await page.textContent("p.notice"), /Status changed to confirmed fraud/);
    const audit = await page.textContent("ol.audit");
    assert.match(audit, /analyst-ana \([0-9a-f]{12}\) review: pending review → confirmed fraud/);
    assert.match(audit, /card holder confirmed: not their purchase/);
    assert.match(await page.textContent("dl.facts"), /Label\s*fraud/);
    const labels = await page.textContent("section[aria-labelledby=h-labels]");
    assert.match(labels, /fraud\s*review/);
    const { body } = await api(`/api/v1/transactions/${encodeURIComponent(row.id)}`, { key: KEYS.analyst });
    assert.equal(body.review_status, "confirmed_fraud");
  });

  test("script payloads in ids, entities, attributes and notes stay text", async () => {
    for (const [i, payload] of PAYLOADS.entries()) {
      const id = `xss-${i}-${payload}`;
      await page.goto(`${BASE}/ui/cases/${encodeURIComponent(id)}`);
      assert.equal((await page.textContent("h1 .id")).trim(), id);
      const text = await page.textContent("main");
      assert.ok(text.includes(`cust-${payload}`), "the entity shown as text");
      assert.ok(text.includes(payload), "the attribute shown as text");
      await page.check("#s-escalated");
      await page.fill("#note", `note ${payload}`);
      await page.click(".review-form button[type=submit]");
      assert.ok((await page.textContent("ol.audit")).includes(`note ${payload}`));
      await checkPage(page, `case with payload ${i}`);
    }
    await page.goto(`${BASE}/ui/queue?status=all&entity=${encodeURIComponent(`cust-${PAYLOADS[1]}`)}`);
    const rows = await queueRows(page);
    assert.equal(rows.length, 1);
    assert.equal(rows[0].id, `xss-1-${PAYLOADS[1]}`);
    assert.equal(await page.inputValue("#f-entity"), `cust-${PAYLOADS[1]}`);
    await page.goto(`${BASE}/ui/queue?status=escalated`);
    await checkPage(page, "queue with payloads");
  });

  test("an unknown case is a 404 page", async () => {
    const response = await page.goto(`${BASE}/ui/cases/${encodeURIComponent("no such <b>case</b>")}`);
    assert.equal(response.status(), 404);
    assert.match(await page.textContent("p.error"), /No transaction "no such <b>case<\/b>" is stored/);
    await checkPage(page, "not found");
  });
});

describe("CSRF and sessions", () => {
  test("a change without the form's token, or with another session's, is refused", async () => {
    const context = await browser.newContext({ viewport: DESKTOP });
    const page = await newPage(context);
    await signIn(page, KEYS.analyst);
    await page.goto(`${BASE}/ui/queue`);
    const [row] = await queueRows(page);
    const post = (body) =>
      page.evaluate(
        async ([url, body]) => {
          const response = await fetch(url, {
            method: "POST",
            headers: { "Content-Type": "application/x-www-form-urlencoded" },
            body,
          });
          return response.status;
        },
        [`${BASE}/ui/cases/${encodeURIComponent(row.id)}/review`, body],
      );
    assert.equal(await post("status=confirmed_fraud"), 403);
    assert.equal(await post(`status=confirmed_fraud&csrf=${"0".repeat(64)}`), 403);
    const other = await browser.newContext();
    const otherPage = await newPage(other);
    await signIn(otherPage, KEYS.admin);
    const foreign = await otherPage.getAttribute("meta[name=csrf-token]", "content");
    assert.equal(await post(`status=confirmed_fraud&csrf=${foreign}`), 403);
    await other.close();
    const { body } = await api(`/api/v1/transactions/${encodeURIComponent(row.id)}`, { key: KEYS.analyst });
    assert.equal(body.review_status, "pending_review", "nothing changed");
    const token = await page.getAttribute("meta[name=csrf-token]", "content");
    assert.equal(await post(`status=escalated&csrf=${token}`), 200, "with its own token it works (and redirects)");
    await context.close();
  });

  test("sign-out ends the session on the server; the old cookie opens nothing", async () => {
    const context = await browser.newContext({ viewport: DESKTOP });
    const page = await newPage(context);
    await signIn(page, KEYS.analyst);
    const [cookie] = (await context.cookies()).filter((c) => c.name === "fraudlens_session");
    await page.click(".who button");
    await page.waitForURL(/\/ui\/login\?signed_out=1$/);
    assert.match(await page.textContent("p.notice"), /signed out/);
    assert.equal((await context.cookies()).filter((c) => c.name === "fraudlens_session").length, 0);
    const replay = await fetch(`${BASE}/ui/queue`, { headers: { Cookie: `fraudlens_session=${cookie.value}` }, redirect: "manual" });
    assert.equal(replay.status, 303);
    assert.match(replay.headers.get("location"), /^\/ui\/login/);
    await context.close();
  });

  test("revoking the key ends its sessions within seconds", async () => {
    const context = await browser.newContext({ viewport: DESKTOP });
    const page = await newPage(context);
    await signIn(page, KEYS.doomed);
    assert.match(page.url(), /\/ui\/queue$/);
    const keyId = KEYS.doomed.split("_")[1];
    execFileSync(BIN, ["keys", "revoke", keyId, "--database", DATABASE], { stdio: "pipe" });
    let url = page.url();
    for (let i = 0; i < 20 && !/\/ui\/login/.test(url); i++) {
      await sleep(500);
      await page.goto(`${BASE}/ui/queue`);
      url = page.url();
    }
    assert.match(url, /\/ui\/login/, "sent to sign in once the key is revoked");
    await context.close();
  });
});

describe("the overview", () => {
  let context;
  let page;
  before(async () => {
    context = await browser.newContext({ viewport: DESKTOP });
    page = await newPage(context);
    await signIn(page, KEYS.analyst);
  });
  after(async () => context.close());

  test("volume, mix, rates, scores and latency over a time range; this process's requests", async () => {
    await page.goto(`${BASE}/ui/overview`);
    const decisions = Number((await page.textContent("dl.tiles div:first-child dd")).trim());
    assert.ok(decisions > 1000, `${decisions} decisions in the last 7 days of data`);
    assert.equal(await page.textContent(".tabs a[aria-current=page]"), "7 days");
    for (const kind of ["approve", "review", "decline"]) {
      assert.ok((await page.$$(`svg rect.${kind}`)).length > 0, `${kind} bars`);
    }
    assert.ok((await page.$$("svg polyline.flagged-line")).length === 1);
    const binned = await page.$$eval("svg rect.bin title", (titles) =>
      titles.reduce((sum, t) => sum + Number(t.textContent.split(": ")[1]), 0),
    );
    assert.equal(binned, decisions, "every decision of the range in one score bin");
    const thisMinute = await page.$$eval("svg rect.requests", (rects) => Number(rects.at(-1).getAttribute("height")));
    assert.ok(thisMinute > 0, "this minute's requests (the page's own) are counted");
    await checkPage(page, "overview");
    await shoot(page, "overview");

    await page.click(".tabs a:text-is('24 hours')");
    const day = Number((await page.textContent("dl.tiles div:first-child dd")).trim());
    assert.ok(day > 0 && day < decisions, `24 hours (${day}) hold fewer than 7 days (${decisions})`);
    await page.fill("#o-from", "2026-02-01T00:00");
    await page.fill("#o-to", "2026-01-01T00:00");
    await page.click("form.filters button[type=submit]");
    assert.match(await page.textContent("p.error"), /must end after it starts/);
    await checkPage(page, "overview with a bad range");
  });
});

describe("drift", () => {
  test("the serving model's inputs by PSI, largest first", async () => {
    const context = await browser.newContext({ viewport: DESKTOP });
    const page = await newPage(context);
    await signIn(page, KEYS.analyst);
    await page.click("nav a:text-is('Drift')");
    assert.match(page.url(), /\/ui\/drift$/);
    const rows = await page.$$eval("table.drift tbody tr", (trs) =>
      trs.map((tr) => ({
        name: tr.querySelector("th").textContent.trim(),
        psi: Number(tr.querySelector("td.num").textContent),
        status: tr.querySelector(".badge").textContent.trim(),
      })),
    );
    assert.ok(rows.length >= 20, `${rows.length} rows`);
    assert.equal(rows[0].name, "score", "the score first");
    const inputs = rows.slice(1).map((r) => r.psi);
    assert.deepEqual(inputs, [...inputs].sort((a, b) => b - a), "largest PSI first");
    assert.ok(rows.every((r) => ["stable", "watch", "act"].includes(r.status) && r.psi >= 0));
    const { body } = await api("/api/v1/models/production/drift", { key: KEYS.analyst });
    assert.equal(body.report.features[0].name, rows[1].name, "the same report as the API");
    await checkPage(page, "drift");
    await shoot(page, "drift");
    await context.close();
  });
});

describe("models", () => {
  async function production() {
    return (await api("/model/info", { key: KEYS.analyst })).body.version;
  }

  test("the registry, a version's curves and importance, and the thresholds what-if", async () => {
    const context = await browser.newContext({ viewport: DESKTOP });
    const page = await newPage(context);
    await signIn(page, KEYS.analyst);
    await page.goto(`${BASE}/ui/models`);
    const versions = await page.$$eval("table.models tbody td.id", (cells) => cells.map((c) => c.textContent.trim()));
    assert.equal(versions.length, 2, versions.join(", "));
    assert.ok(versions.includes(await production()));
    assert.equal((await page.$$("a[href$='/promote']")).length, 0, "an analyst is offered no promotion");
    await checkPage(page, "models");
    await shoot(page, "models");

    await page.click(`table.models a:text-is("${await production()}")`);
    assert.ok((await page.$$("svg polyline.curve")).length === 1, "the precision-recall curve");
    assert.ok((await page.$$("svg circle.bin")).length > 3, "the reliability diagram");
    assert.ok((await page.$$("svg rect.gain")).length >= 5, "gain importance");
    const alerts = async () => Number((await page.textContent("table.whatif-result tbody tr:first-child td.proposed")).trim());
    const before = await alerts();
    const current = Number(await page.inputValue("#w-review"));
    await page.fill("#w-review", String(Math.min(0.99, current + (1 - current) / 2)));
    await page.click("form.whatif button[type=submit]");
    const after = await alerts();
    assert.ok(after < before || before === 0, `a higher review threshold sends fewer alerts (${before} → ${after})`);
    assert.match(page.url(), /review=/);
    await checkPage(page, "model");
    await shoot(page, "model");
    await page.fill("#w-review", "0.9");
    await page.fill("#w-decline", "0.5");
    await page.click("form.whatif button[type=submit]");
    assert.match(await page.textContent("p.error"), /decline threshold must be at or above/);
    await context.close();
  });

  test("an analyst may not promote, not even with a forged form", async () => {
    const context = await browser.newContext({ viewport: DESKTOP });
    const page = await newPage(context);
    await signIn(page, KEYS.analyst);
    const serving = await production();
    const { body: models } = await api("/api/v1/models", { key: KEYS.analyst });
    const staging = models.find((m) => m.version !== serving).version;
    const response = await page.goto(`${BASE}/ui/models/${staging}/promote`);
    assert.equal(response.status(), 403);
    assert.match(await page.textContent("p.error"), /Only an admin/);
    await checkPage(page, "promotion refused");
    assert.equal(await page.$("meta[name=csrf-token]"), null, "the refusal page carries no form token");
    await page.goto(`${BASE}/ui/queue`);
    const csrf = await page.getAttribute("meta[name=csrf-token]", "content");
    assert.ok(csrf);
    const status = await page.evaluate(
      async ([url, body]) =>
        (await fetch(url, { method: "POST", headers: { "Content-Type": "application/x-www-form-urlencoded" }, body })).status,
      [`${BASE}/ui/models/${staging}/promote`, `csrf=${csrf}`],
    );
    assert.equal(status, 403);
    assert.equal(await production(), serving, "still the same model");
    await context.close();
  });

  test("an admin promotes behind a confirmation, then rolls back", async () => {
    const context = await browser.newContext({ viewport: DESKTOP });
    const page = await newPage(context);
    await signIn(page, KEYS.admin);
    const serving = await production();
    await page.goto(`${BASE}/ui/models`);
    await page.click("table.models a:text-is('Promote')");
    assert.match(page.url(), /\/promote$/);
    const staging = decodeURIComponent(page.url().split("/").at(-2));
    assert.notEqual(staging, serving);
    assert.equal(await production(), serving, "nothing changes before the confirmation");
    await checkPage(page, "promotion confirmation");
    await shoot(page, "promote");
    await page.click("main form button[type=submit]");
    assert.match(await page.textContent("p.notice"), new RegExp(`${staging} is in production`));
    assert.equal(await production(), staging);
    const history = await page.textContent("ol.audit");
    assert.match(history, new RegExp(`admin-ada \\([0-9a-f]{12}\\) promoted ${staging} \\(replacing ${serving}\\)`));

    await page.click(`a.button:text-is("Roll back to ${serving}")`);
    await page.click("main form button[type=submit]");
    assert.match(await page.textContent("p.notice"), new RegExp(`${serving} is in production`));
    assert.equal(await production(), serving);
    await context.close();
  });
});

describe("API keys (admins)", () => {
  test("an admin lists keys and revokes one behind a confirmation; an analyst is refused", async () => {
    const analyst = await browser.newContext({ viewport: DESKTOP });
    const analystPage = await newPage(analyst);
    await signIn(analystPage, KEYS.analyst);
    assert.equal(await analystPage.$("nav a:text-is('Keys')"), null, "no Keys entry for an analyst");
    assert.equal((await analystPage.goto(`${BASE}/ui/keys`)).status(), 403);
    await analyst.close();

    const context = await browser.newContext({ viewport: DESKTOP });
    const page = await newPage(context);
    await signIn(page, KEYS.admin);
    await page.click("nav a:text-is('Keys')");
    const html = await page.content();
    for (const key of Object.values(KEYS)) {
      assert.ok(!html.includes(key.split("_")[2]), "no secret on the page");
    }
    const spareId = KEYS.spare.split("_")[1];
    assert.equal((await api("/model/info", { key: KEYS.spare })).status, 200, "the spare key works");
    await checkPage(page, "keys");
    await shoot(page, "keys");
    await page.click(`tr:has(td.id:text-is("${spareId}")) a`);
    assert.match(await page.textContent("h1"), /Revoke analyst-spare\?/);
    assert.equal((await api("/model/info", { key: KEYS.spare })).status, 200, "nothing happens before the confirmation");
    await page.click("main form button[type=submit]");
    assert.match(await page.textContent("p.notice"), new RegExp(`${spareId} is revoked`));
    let status = 200;
    for (let i = 0; i < 20 && status !== 401; i++) {
      await sleep(500);
      status = (await api("/model/info", { key: KEYS.spare })).status;
    }
    assert.equal(status, 401, "the revoked key is refused within seconds");
    await context.close();
  });
});
