// The web page in headless Chromium, driven by playwright-core; run by
// crates/server/tests/web_browser.rs, which starts the control plane, stores
// the records, and answers this script's requests for live records.
//
// Protocol (one line each): this script prints `need <what>` on stdout and
// waits for `sent` on stdin; it prints `ok` and exits 0 when every check
// passed, or exits 1 with the failure on stderr.
//
// Environment: WARDEN_URL, WARDEN_TOKEN, WARDEN_GAP_PATH (a session page
// with a gap at 3..=5), WARDEN_SCREENSHOTS (a directory), WARDEN_CHROMIUM.
import { chromium } from 'playwright-core';
import { createInterface } from 'node:readline';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';

const base = process.env.WARDEN_URL;
const token = process.env.WARDEN_TOKEN;
const gapPath = process.env.WARDEN_GAP_PATH;
const shots = process.env.WARDEN_SCREENSHOTS;
const executablePath = process.env.WARDEN_CHROMIUM || '/usr/bin/chromium';
const LIVE_WAIT_MS = 10_000;

const stdin = createInterface({ input: process.stdin });
const replies = stdin[Symbol.asyncIterator]();
async function need(what) {
  process.stdout.write(`need ${what}\n`);
  const { value, done } = await replies.next();
  if (done || value.trim() !== 'sent') throw new Error(`no record for ${what}: got ${value}`);
}

function check(cond, message) {
  if (!cond) throw new Error(message);
}

const HOSTILE_TEXT = [
  "https://evil.example/<script>alert('xss-script')</script>",
  "https://evil.example/\"><img src=x onerror=alert('xss-img')>",
  "javascript:alert('xss-link')",
  "https://evil.example/'><svg onload=alert('xss-svg')>",
];

mkdirSync(shots, { recursive: true });
const browser = await chromium.launch({
  executablePath,
  args: [
    '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});
const dialogs = [];
const requests = [];
const violations = [];
try {
  const context = await browser.newContext({ viewport: { width: 1366, height: 768 }, colorScheme: 'light' });
  // Record every request any page makes, and every dialog (an alert() that
  // ran would open one).
  context.on('request', (r) => requests.push(r.url()));
  const page = await context.newPage();
  page.on('dialog', (d) => { dialogs.push(d.message()); d.dismiss().catch(() => {}); });
  page.on('console', (m) => { if (/Content.Security.Policy/i.test(m.text())) violations.push(m.text()); });
  page.on('pageerror', (e) => violations.push(`page error: ${e.message}`));

  // Without a session: the sign-in form.
  await page.goto(base + '/');
  check(new URL(page.url()).pathname === '/login', `expected /login, at ${page.url()}`);
  check(!page.url().includes(token), 'the token is in a URL');
  await page.screenshot({ path: join(shots, 'login.png') });
  await page.fill('input[name=token]', token);
  await Promise.all([page.waitForURL(base + '/'), page.click('button[type=submit]')]);
  check(!page.url().includes(token), 'the token is in a URL after sign-in');
  const cookies = await context.cookies();
  const session = cookies.find((c) => c.name === 'warden_session');
  check(session && session.httpOnly && session.sameSite === 'Strict', `session cookie: ${JSON.stringify(session)}`);
  check(await page.evaluate(() => document.cookie) === '', 'a script can read a cookie');

  await page.screenshot({ path: join(shots, 'feed.png') });

  // The stored hostile records show as text.
  const feedUrls = () => page.$$eval('#feed .url', (els) => els.map((e) => e.textContent));
  const urls = await feedUrls();
  for (const text of HOSTILE_TEXT) check(urls.includes(text), `missing as text: ${text} in ${JSON.stringify(urls)}`);
  check(urls.some((u) => u === 'https://bank.example/\\u{202e}gpj.exe'), `bidi override not shown escaped: ${JSON.stringify(urls)}`);
  check(urls.some((u) => u.startsWith('https://ansi.example/\\u{1b}[31mred')), 'ANSI escape not shown escaped');
  const injected = await page.$$eval('main img, main svg:not(.chart svg), main script, main iframe, a[href^="javascript:"], [onerror], [onload]', (els) => els.length);
  check(injected === 0, `${injected} injected elements in the feed`);

  // A record sent after sign-in appears live (and its text is escaped the
  // same way as the server's rows).
  await page.waitForFunction(() => document.getElementById('live-status').textContent === 'live', null, { timeout: LIVE_WAIT_MS });
  await need('live');
  await page.waitForSelector('#feed li.rec.new .url >> text=live.example', { timeout: LIVE_WAIT_MS });
  const pairs = await page.$$eval('#feed li.rec', (rows) => rows.map((r) => ({ live: r.classList.contains('new'), url: r.querySelector('.url').textContent, html: r.querySelector('.url').innerHTML, more: r.querySelector('.more').innerHTML })));
  for (const live of pairs.filter((p) => p.live && !p.url.includes('live.example'))) {
    const server = pairs.find((p) => !p.live && p.url === live.url);
    check(server, `no server-rendered row for live ${live.url}`);
    check(server.html === live.html, `live and server rows differ: ${server.html} vs ${live.html}`);
    check(server.more === live.more, `live and server details differ: ${server.more} vs ${live.more}`);
  }
  check(pairs.filter((p) => p.live).length >= HOSTILE_TEXT.length, 'the hostile records did not arrive live');
  await page.screenshot({ path: join(shots, 'feed-live.png') });

  // Pause holds new records; resume shows them.
  await page.click('#pause');
  await need('paused');
  await page.waitForFunction(() => /^paused: \d+ new$/.test(document.getElementById('live-status').textContent), null, { timeout: LIVE_WAIT_MS });
  check(!(await page.$('#feed .url >> text=paused.example')), 'a record showed while paused');
  await page.click('#pause');
  await page.waitForSelector('#feed .url >> text=paused.example', { timeout: LIVE_WAIT_MS });

  // Keyboard: the pause button is reachable with Tab.
  await page.goto(base + '/');
  let reached = false;
  for (let i = 0; i < 40 && !reached; i++) {
    await page.keyboard.press('Tab');
    reached = await page.evaluate(() => document.activeElement && document.activeElement.id === 'pause');
  }
  check(reached, 'the pause button is not reachable with Tab');

  // Filter to denials through the form: the query is the page's URL.
  await page.selectOption('select[name=decision]', 'deny');
  await Promise.all([page.waitForURL(/decision=deny/), page.click('form.filters button[type=submit]')]);
  const classes = await page.$$eval('#feed li.rec', (rows) => rows.map((r) => r.className));
  check(classes.length > 0 && classes.every((c) => c.includes('deny')), `not only denials: ${classes}`);
  await page.screenshot({ path: join(shots, 'feed-denied.png') });

  // Overview: the chart and the tables.
  await page.goto(base + '/overview');
  const bars = await page.$$eval('.chart rect', (r) => r.length);
  check(bars > 0, 'no bars in the chart');
  check(await page.$('#losses'), 'no loss table');
  await page.screenshot({ path: join(shots, 'overview.png'), fullPage: true });

  // A session with a gap: the gap is drawn between the records around it.
  await page.goto(base + gapPath);
  const gap = await page.$$eval('#session-records > li', (rows) => rows.map((r) => r.classList.contains('gap') ? 'gap:' + r.textContent : 'rec:' + r.querySelector('.url').textContent));
  const at = gap.findIndex((r) => r.startsWith('gap:') && r.includes('3–5'));
  check(at > 0 && gap[at - 1].endsWith('/2') && gap[at + 1].endsWith('/6'), `gap not where it is: ${JSON.stringify(gap)}`);
  check(await page.isVisible('li.gap'), 'the gap is not visible');
  await page.screenshot({ path: join(shots, 'session.png'), fullPage: true });

  // Dark theme follows the system.
  const light = await page.evaluate(() => getComputedStyle(document.documentElement).backgroundColor);
  await page.emulateMedia({ colorScheme: 'dark' });
  const dark = await page.evaluate(() => getComputedStyle(document.documentElement).backgroundColor);
  check(light !== dark, `the theme does not follow the system: ${light} / ${dark}`);
  await page.goto(base + '/');
  await page.screenshot({ path: join(shots, 'feed-dark.png') });
  await page.emulateMedia({ colorScheme: 'light' });

  // Phone width: nothing wider than the screen.
  for (const path of ['/', '/overview', gapPath]) {
    await page.setViewportSize({ width: 390, height: 844 });
    await page.goto(base + path);
    const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
    check(overflow <= 0, `${path} is ${overflow}px wider than a phone`);
  }
  await page.goto(base + '/');
  await page.screenshot({ path: join(shots, 'feed-phone.png') });
  await page.setViewportSize({ width: 1366, height: 768 });

  // Sign out: back to the form, and the pages need a session again.
  await page.goto(base + '/');
  await Promise.all([page.waitForURL(base + '/login'), page.click('form.signout button')]);
  await page.goto(base + '/overview');
  check(new URL(page.url()).pathname === '/login', `still signed in: ${page.url()}`);

  // Nothing ran, nothing went anywhere else.
  check(dialogs.length === 0, `dialogs opened: ${JSON.stringify(dialogs)}`);
  const foreign = requests.filter((u) => !u.startsWith(base + '/'));
  check(foreign.length === 0, `requests to unexpected addresses: ${JSON.stringify(foreign)}`);
  check(violations.length === 0, `CSP violations or page errors: ${JSON.stringify(violations)}`);
  const paths = [...new Set(requests.map((u) => new URL(u).pathname))].sort();
  // Same origin is not enough: an injected <img src=x> would fetch /x here.
  const expected = /^\/(login|logout|overview|assets\/app\.(js|css)|api\/v1\/records\/stream|workspaces\/[^/]+(\/sessions\/[^/]+)?|favicon\.ico)?$/;
  const unexpected = paths.filter((p) => !expected.test(p));
  check(unexpected.length === 0, `requests for unexpected paths: ${JSON.stringify(unexpected)}`);
  process.stdout.write(`ok ${JSON.stringify({ requests: requests.length, paths })}\n`);
} finally {
  await browser.close();
  stdin.close();
}
