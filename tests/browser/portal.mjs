// Drives the admin portal in Debian's headless Chromium, as an administrator
// would, against a real `guestlist serve`. Started by tests/portal_browser.rs,
// which passes:
//   BASE_URL     the server, always a loopback address
//   ADMIN_TOKEN  a valid admin token
//   WORK_DIR     where to write the upload files
//   SHOT_DIR     where to save screenshots (under target/)
// Any failed expectation throws, and the process exits non-zero.

import { chromium } from "playwright-core";
import { mkdirSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import assert from "node:assert/strict";

const base = process.env.BASE_URL;
const token = process.env.ADMIN_TOKEN;
const work = process.env.WORK_DIR;
const shots = process.env.SHOT_DIR;
assert.ok(base && /^http:\/\/127\.0\.0\.1:\d+$/.test(base), "BASE_URL must be a loopback URL");
assert.ok(token && work && shots, "ADMIN_TOKEN, WORK_DIR and SHOT_DIR are required");
mkdirSync(shots, { recursive: true });

const step = (name) => console.log(`· ${name}`);
const minutes = (m) => new Date(Date.now() + m * 60_000);
// What a datetime-local input takes, in UTC (the form's fields are UTC).
const local = (d) => d.toISOString().slice(0, 16);

// Upload files: 30,000 distinct IDs, and 20,000 lines with line 12,345 bad.
const ids = Array.from({ length: 30_000 }, (_, i) => 1_000_000 + i * 7);
const good = join(work, "audience.csv");
writeFileSync(good, ids.join("\n") + "\n");
const badLines = Array.from({ length: 20_000 }, (_, i) => String(5_000_000 + i));
badLines[12_344] = "12x45";
const bad = join(work, "with-bad-line.csv");
writeFileSync(bad, badLines.join("\n") + "\n");
// The story's mistake: a fragment of the list pasted as the whole audience.
const fragment = join(work, "fragment.csv");
writeFileSync(fragment, ids.slice(0, 10).join("\n") + "\n");
// A CRM export: five columns, a header, quoted fields with commas, doubled
// quotes and a line break. The IDs are "user id"; "account" is numeric too.
const crmIds = [7_000_001, 7_000_002, 7_000_003];
const crm = join(work, "crm-export.csv");
writeFileSync(crm, "name,account,user id,email,notes\r\n" +
  `"Doe, Jane",501,${crmIds[0]},jane@example.com,"said ""hi"""\r\n` +
  `Bob,502,${crmIds[1]},bob+vip@example.com,"two\r\nlines"\r\n` +
  `"O'Neil, Ann",503,${crmIds[2]},ann@example.com,\r\n`);

// Two more campaigns through the API, so the list shows every status.
async function api(method, path, body) {
  const res = await fetch(base + path, {
    method,
    headers: { Authorization: `Bearer ${token}`, "Content-Type": "application/json" },
    body: body && JSON.stringify(body),
  });
  assert.ok(res.ok, `${method} ${path}: ${res.status} ${await res.text()}`);
}
// Times with seconds and milliseconds, which the portal's minute inputs cannot show.
const winterStarts = new Date(Math.floor(minutes(60 * 24 * 20).getTime() / 60_000) * 60_000 + 17_250);
await api("POST", "/v1/campaigns", {
  id: "winter-sale", name: "Winter sale", design: "bitmap",
  starts_at: winterStarts.toISOString(), ends_at: minutes(60 * 24 * 30).toISOString(),
});
await api("POST", "/v1/campaigns", {
  id: "welcome-back", name: "Welcome back", design: "per-user",
  starts_at: minutes(-60 * 24 * 30).toISOString(), ends_at: minutes(-60 * 24 * 2).toISOString(),
});

const browser = await chromium.launch({
  executablePath: "/usr/bin/chromium",
  args: [
    "--no-sandbox", "--headless", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
  ],
});
try {
  const context = await browser.newContext({ viewport: { width: 1280, height: 800 }, timezoneId: "Europe/Paris" });
  const page = await context.newPage();
  page.setDefaultTimeout(15_000);
  const consoleErrors = [];
  page.on("console", (m) => { if (m.type() === "error") { consoleErrors.push(m.text()); console.error(`browser console: ${m.text()}`); } });
  page.on("pageerror", (e) => { consoleErrors.push(String(e)); console.error(`page error: ${e}`); });
  const nav = (name) => page.getByRole("navigation", { name: "Main" }).getByRole("link", { name, exact: true });
  const shot = (name, opts = {}) => page.screenshot({ path: join(shots, `${name}.png`), fullPage: true, ...opts });

  step("without a session, the portal redirects to sign-in");
  await page.goto(base + "/admin/campaigns/spring-sale");
  assert.equal(new URL(page.url()).pathname, "/admin/signin");
  await shot("01-signin");

  step("a wrong token is refused without saying anything else");
  await page.getByLabel("Admin token").fill("not-the-token");
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.getByText("That token is not valid.").waitFor();
  assert.equal(new URL(page.url()).pathname, "/admin/signin");

  step("signs in");
  await page.getByLabel("Admin token").fill(token);
  await page.getByRole("button", { name: "Sign in" }).click();
  await page.waitForURL("**/admin/campaigns");
  await page.getByText("Signed in as").waitFor();
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === "__Host-guestlist_session");
  assert.ok(session, "session cookie set");
  assert.equal(session.httpOnly, true);
  assert.equal(session.sameSite, "Strict");
  assert.equal(session.secure, true, "Secure, which a browser keeps over http only for a loopback host");
  assert.ok(session.expires > Date.now() / 1000, "the session cookie expires");

  step("creating a campaign with an invalid window shows the field error and keeps the values");
  await nav("New campaign").click();
  await page.getByLabel("ID", { exact: true }).fill("spring-sale");
  await page.getByLabel("Name").fill("Spring sale");
  await page.getByLabel("Starts (UTC)").fill(local(minutes(-60)));
  await page.getByLabel("Ends (UTC)").fill(local(minutes(-120)));
  await page.getByRole("button", { name: "Create campaign" }).click();
  const endsError = page.locator("#ends_at-error");
  await endsError.waitFor();
  assert.match(await endsError.textContent(), /must be after starts_at/);
  assert.equal(await page.getByLabel("Name").inputValue(), "Spring sale");
  assert.equal(await page.getByLabel("ID", { exact: true }).inputValue(), "spring-sale");
  await shot("02-create-field-errors");

  step("fixes the window and creates it");
  await page.getByLabel("Ends (UTC)").fill(local(minutes(60 * 24 * 14)));
  await page.getByRole("button", { name: "Create campaign" }).click();
  await page.waitForURL("**/admin/campaigns/spring-sale?done=created");
  await page.getByText("Campaign created.").waitFor();

  step("uploads a 30,000-line file and sees the progress and the result");
  await page.locator("#file").setInputFiles(good);
  await page.getByRole("button", { name: "Upload" }).click();
  await page.locator("#upload-progress").waitFor({ state: "visible" });
  const result = page.locator("#upload-result");
  await result.getByText("Audience replaced.").waitFor();
  assert.equal(await page.locator("#upload-progress progress").evaluate((p) => p.value), 100);
  assert.match(await page.locator(".progress-text").textContent(), /^Done · /);
  const resultText = await result.textContent();
  assert.match(resultText, /Received\s*30,000/);
  assert.match(resultText, /Duplicates\s*0/);
  assert.match(resultText, /New size\s*30,000/);
  assert.equal(await page.locator("#audience-size").textContent(), "30,000");
  // The page refreshes its facts and history in place, and the banner
  // about the creation goes.
  const history = page.locator("section[aria-labelledby=audit-title]");
  await history.getByText("replaced 0 IDs with 30,000 at version 1").waitFor();
  assert.equal(await page.getByText("Campaign created.").count(), 0, "the creation banner is gone");
  assert.equal(await page.locator("#audience-version").textContent(), "1");
  await shot("03-campaign-uploaded");

  step("a file with a bad line 12,345 shows that line and changes nothing");
  await page.locator("#file").setInputFiles(bad);
  await page.getByRole("button", { name: "Upload" }).click();
  const failure = result.locator(".alert.error");
  await failure.waitFor();
  const failureText = await failure.textContent();
  assert.match(failureText, /Line 12,345/);
  assert.match(failureText, /nothing was changed/);
  await shot("04-upload-bad-line");
  await page.reload();
  assert.equal(await page.locator("#audience-size").textContent(), "30,000");

  step("looks up a member and a non-member");
  await page.getByLabel("User ID", { exact: true }).fill(String(ids[12_345]));
  await page.getByRole("button", { name: "Check" }).click();
  await page.waitForURL(new RegExp(`/admin/campaigns/spring-sale\\?user=${ids[12_345]}`));
  assert.match(await page.locator("#lookup-result").textContent(), /is a member/);
  await page.getByLabel("User ID", { exact: true }).fill("1000001");
  await page.getByRole("button", { name: "Check" }).click();
  await page.waitForURL(/\/admin\/campaigns\/spring-sale\?user=1000001/);
  assert.match(await page.locator("#lookup-result").textContent(), /is not a member/);
  await nav("Look up a user").click();
  await page.waitForURL("**/admin/lookup");
  await page.getByLabel("User ID", { exact: true }).fill(String(ids[0]));
  await page.getByRole("button", { name: "Look up" }).click();
  await page.waitForURL(`**/admin/lookup?user=${ids[0]}`);
  const found = page.locator("#lookup-result");
  assert.match(await found.textContent(), /is in 1 active campaign/);
  assert.ok(await found.getByRole("link", { name: "spring-sale" }).isVisible());
  await shot("05-lookup");

  step("a replace that would remove most of the audience is previewed and asks first");
  await page.goto(base + "/admin/campaigns/spring-sale");
  await page.locator("#file").setInputFiles(fragment);
  await page.getByRole("button", { name: "Upload" }).click();
  const publish = result.getByRole("button", { name: "Publish anyway" });
  await publish.waitFor();
  const preview = await result.textContent();
  assert.match(preview, /would remove 29,990 of 30,000 IDs \(100\.0%\)/i);
  assert.match(preview, /Size after\s*10/);
  assert.match(preview, new RegExp("Some removed IDs\\s*" + ids[10]));
  assert.equal(await page.locator("#audience-size").textContent(), "30,000", "nothing published yet");
  await shot("05b-upload-preview-confirm");
  await result.getByRole("button", { name: "Cancel" }).click();
  await result.getByText("Nothing was changed.").waitFor();
  assert.equal(await page.locator("#audience-version").textContent(), "1");
  await page.locator("#file").setInputFiles(fragment);
  await page.getByRole("button", { name: "Upload" }).click();
  await publish.waitFor();
  await publish.click();
  await result.getByText("Audience replaced.").waitFor();
  await history.getByText("replaced 30,000 IDs with 10 at version 2").waitFor();
  assert.equal(await page.locator("#audience-size").textContent(), "10");
  assert.equal(await page.locator("#audience-version").textContent(), "2");
  await shot("05c-upload-confirmed");

  step("adds a CSV export's ID column, chosen by name after a preview of the first rows");
  await page.getByLabel("Add these IDs").check();
  await page.locator("#file").setInputFiles(crm);
  const previewTable = page.locator("#file-preview table");
  await previewTable.getByText("choose the ID column", { exact: false }).waitFor();
  await page.getByLabel("The first row is a header").check();
  await page.getByLabel(/^ID column/).fill("user id");
  await previewTable.locator("th.id-column").getByText("user id").waitFor();
  assert.deepEqual(await previewTable.locator("td.id-column").allTextContents(), crmIds.map(String));
  assert.equal(await previewTable.locator("tr").count(), 4, "the header and three rows, the quoted line break inside one");
  await shot("05d-csv-column-preview");
  await page.getByRole("button", { name: "Upload" }).click();
  await result.getByText("IDs added.").waitFor();
  assert.equal(await page.locator("#audience-size").textContent(), "13");
  await history.getByText("added 3 IDs: 10 -> 13 at version 3").waitFor();

  step("downloads the audience as a backup, named after its version");
  const download = page.locator("#audience-download");
  assert.equal(await download.textContent(), "Download version 3", "the link follows the upload");
  const saved = await page.request.get(base + await download.getAttribute("href"));
  assert.equal(saved.status(), 200);
  assert.equal(saved.headers()["content-disposition"], 'attachment; filename="spring-sale-v3.txt"');
  const exported = (await saved.text()).trim().split("\n");
  assert.deepEqual(exported, [...ids.slice(0, 10), ...crmIds].map(String), "the fragment and the CSV column");

  step("rolls the audience back to version 1 from its history, after typing the campaign id");
  const versions = page.locator("section[aria-labelledby=versions-title]");
  assert.equal(await versions.locator("tbody tr").count(), 3, "versions 3, 2 and 1, refreshed after the upload");
  assert.match(await versions.locator("#version-3").textContent(), /live/);
  assert.match(await versions.locator("#version-1").textContent(), /30,000\s*.*alice\s*Replaced/s);
  await versions.locator("#version-1").getByRole("link", { name: "Roll back…" }).click();
  await page.waitForURL("**/admin/campaigns/spring-sale/rollback/1");
  const rollBack = page.getByRole("button", { name: "Roll back to version 1" });
  assert.equal(await rollBack.isDisabled(), true, "disabled until the id is typed");
  assert.match(await page.locator(".alert.warn").textContent(), /version 3, 13 IDs.*version 1's 30,000 IDs/s);
  await page.getByLabel(/to confirm/).fill("spring-sale");
  await shot("05e-rollback-confirm");
  await rollBack.click();
  await page.getByText("Audience rolled back, as a new version.").waitFor();
  assert.equal(await page.locator("#audience-size").textContent(), "30,000");
  assert.equal(await page.locator("#audience-version").textContent(), "4");
  assert.match(await versions.locator("#version-4").textContent(), /alice\s*Rolled back to version 1\s*live/);
  await history.getByText("rolled back to version 1: 13 IDs -> 30,000 at version 4").waitFor();
  await shot("05f-rolled-back");
  const restored = await page.request.get(base + "/admin/campaigns/spring-sale/audience.txt");
  assert.deepEqual((await restored.text()).trim().split("\n"), ids.map(String), "exactly version 1's IDs");

  step("edits the window");
  await page.goto(base + "/admin/campaigns/spring-sale/edit");
  await page.getByLabel("Ends (UTC)").fill(local(minutes(60 * 24 * 21)));
  await page.getByRole("button", { name: "Save changes" }).click();
  await page.getByText("Campaign updated.").waitFor();

  step("renaming alone leaves the window as it was, to the second");
  await page.goto(base + "/admin/campaigns/winter-sale/edit");
  await page.getByLabel("Name").fill("Winter sale 2026");
  await page.getByRole("button", { name: "Save changes" }).click();
  await page.getByText("Campaign updated.").waitFor();
  const winter = await (await fetch(base + "/v1/campaigns/winter-sale", { headers: { Authorization: `Bearer ${token}` } })).json();
  assert.equal(winter.name, "Winter sale 2026");
  assert.equal(new Date(winter.starts_at).getTime(), winterStarts.getTime());
  const winterLog = await (await fetch(base + "/v1/audit?campaign=winter-sale&limit=1", { headers: { Authorization: `Bearer ${token}` } })).json();
  assert.equal(winterLog.events[0].summary, 'renamed to "Winter sale 2026"');

  step("the campaigns table shows every status and sorts");
  await nav("Campaigns").click();
  await page.waitForURL("**/admin/campaigns");
  for (const status of ["active", "scheduled", "ended"]) {
    assert.ok(await page.locator(`.badge.${status}`).first().isVisible(), status);
  }
  await page.getByRole("link", { name: /Audience/ }).click();
  await page.waitForURL(/sort=size&dir=asc/);
  await page.getByRole("link", { name: /Audience/ }).click();
  await page.waitForURL(/sort=size&dir=desc/);
  const firstRow = page.locator("table.campaigns tbody tr").first();
  assert.match(await firstRow.textContent(), /spring-sale/, "largest audience first when sorted descending");
  await page.getByRole("link", { name: /^Active/ }).click();
  await page.waitForURL(/status=active/);
  assert.equal(await page.locator("table.campaigns tbody tr").count(), 1);
  await page.getByRole("link", { name: /^All/ }).click();
  await page.waitForURL((url) => url.pathname === "/admin/campaigns" && !url.search.includes("status="));
  await shot("06-campaigns");
  await page.setViewportSize({ width: 390, height: 844 });
  await shot("07-campaigns-narrow");
  await page.setViewportSize({ width: 1280, height: 800 });

  step("deletes the campaign after typing its id");
  await page.goto(base + "/admin/campaigns/spring-sale/delete");
  const confirmButton = page.getByRole("button", { name: "Delete campaign" });
  assert.equal(await confirmButton.isDisabled(), true, "disabled until the id is typed");
  await page.getByLabel(/to confirm/).fill("spring-sale");
  await shot("08-delete-confirm");
  await confirmButton.click();
  await page.getByText("Campaign deleted.").waitFor();
  assert.equal(await page.locator("table.campaigns tbody tr", { hasText: "spring-sale" }).count(), 0);

  step("finds each change in the audit log");
  await nav("Audit log").click();
  await page.waitForURL("**/admin/audit");
  await page.getByLabel("Campaign ID").fill("spring-sale");
  await page.getByRole("button", { name: "Filter" }).click();
  await page.waitForURL("**/admin/audit?campaign=spring-sale");
  const log = await page.locator("table.events").textContent();
  for (const want of [
    /created "Spring sale"/,
    /replaced 0 IDs with 30,000 at version 1/,
    /window changed to/,
    /deleted/,
  ]) {
    assert.match(log, want);
  }
  assert.doesNotMatch(log, /12x45|20,000/, "the refused upload changed nothing");
  const actors = await page.locator("table.events tbody td:nth-child(2)").allTextContents();
  assert.ok(actors.length >= 4 && actors.every((a) => a === "alice"), `actors: ${actors}`);
  await shot("09-audit");

  step("a campaign of string IDs: created, loaded from a CSV export's email column, looked up by email");
  await nav("New campaign").click();
  await page.getByLabel("ID", { exact: true }).fill("vip-emails");
  await page.getByLabel("Name").fill("VIP emails");
  await page.getByLabel("Starts (UTC)").fill(local(minutes(-60)));
  await page.getByLabel("Ends (UTC)").fill(local(minutes(60 * 24)));
  await page.getByLabel("User ID type").selectOption("string");
  await shot("10a-string-campaign-create");
  await page.getByRole("button", { name: "Create campaign" }).click();
  await page.waitForURL("**/admin/campaigns/vip-emails?done=created");
  await page.getByText("string", { exact: true }).waitFor();
  await page.locator("#file").setInputFiles(crm);
  const emailTable = page.locator("#file-preview table");
  await emailTable.getByText("choose the ID column", { exact: false }).waitFor();
  await page.getByLabel("The first row is a header").check();
  await page.getByLabel(/^ID column/).fill("email");
  await emailTable.locator("th.id-column").getByText("email").waitFor();
  const emails = ["jane@example.com", "bob+vip@example.com", "ann@example.com"];
  assert.deepEqual(await emailTable.locator("td.id-column").allTextContents(), emails);
  await shot("10b-string-csv-column-preview");
  await page.getByRole("button", { name: "Upload" }).click();
  await result.getByText("Audience replaced.").waitFor();
  assert.equal(await page.locator("#audience-size").textContent(), "3");
  await page.getByLabel("User ID", { exact: true }).fill("bob+vip@example.com");
  await page.getByRole("button", { name: "Check" }).click();
  await page.waitForURL(/\/admin\/campaigns\/vip-emails\?user=bob%2Bvip%40example\.com/);
  assert.match(await page.locator("#lookup-result").textContent(), /is a member/);
  await page.getByLabel("User ID", { exact: true }).fill("Bob+VIP@example.com");
  await page.getByRole("button", { name: "Check" }).click();
  await page.waitForURL(/user=Bob%2BVIP/);
  assert.match(await page.locator("#lookup-result").textContent(), /is not a member/, "compared exactly");
  await page.getByLabel("User ID", { exact: true }).fill("ann@example.com");
  await page.getByRole("button", { name: "Check" }).click();
  await page.waitForURL(/user=ann%40example\.com/);
  assert.match(await page.locator("#lookup-result").textContent(), /is a member/);
  await shot("10c-string-lookup");
  const exportedEmails = (await (await fetch(base + "/v1/campaigns/vip-emails/audience", { headers: { Authorization: `Bearer ${token}` } })).text()).trim().split("\n");
  assert.deepEqual(exportedEmails, [...emails].sort(), "exactly the email column");

  step("signs out");
  await page.getByRole("button", { name: "Sign out" }).click();
  await page.waitForURL("**/admin/signin");
  await page.goto(base + "/admin/campaigns");
  assert.equal(new URL(page.url()).pathname, "/admin/signin");

  assert.deepEqual(consoleErrors.filter((e) => !/status of 4\d\d/.test(e)), [], "no script errors");
  console.log(`screenshots in ${shots}`);
} catch (e) {
  // Leave evidence for whoever reads the CI log.
  const pages = browser.contexts().flatMap((c) => c.pages());
  if (pages.length) {
    await pages[0].screenshot({ path: join(shots, "failure.png"), fullPage: true }).catch(() => {});
    console.error(`failed at ${pages[0].url()}; screenshot: ${join(shots, "failure.png")}`);
  }
  throw e;
} finally {
  await browser.close();
}
