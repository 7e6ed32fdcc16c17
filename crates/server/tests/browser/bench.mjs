// The web page's speed in headless Chromium (run by
// crates/server/benches/web.rs, never by the test suite): navigation timing
// of the feed and the overview over a large store, then the live feed under
// a steady record rate with the tab's memory sampled.
//
// Prints one `result <json>` line per measurement; asks the bench for the
// live load with `need stream` (answered with `sent` once it started) and
// says `done` at the end.
import { chromium } from 'playwright-core';
import { createInterface } from 'node:readline';
import { execSync } from 'node:child_process';
import { readFileSync } from 'node:fs';

const base = process.env.WARDEN_URL;
const token = process.env.WARDEN_TOKEN;
const runs = parseInt(process.env.WARDEN_BENCH_RUNS || '7', 10);
const liveSecs = parseInt(process.env.WARDEN_BENCH_LIVE_SECS || '600', 10);
const sampleSecs = 10;
const executablePath = process.env.WARDEN_CHROMIUM || '/usr/bin/chromium';

const stdin = createInterface({ input: process.stdin });
const replies = stdin[Symbol.asyncIterator]();
async function need(what) {
  process.stdout.write(`need ${what}\n`);
  const { value } = await replies.next();
  if (value.trim() !== 'sent') throw new Error(`unexpected reply ${value}`);
}
const result = (r) => process.stdout.write(`result ${JSON.stringify(r)}\n`);
const median = (xs) => { const s = [...xs].sort((a, b) => a - b); return s[Math.floor(s.length / 2)]; };
const round = (x) => Math.round(x * 10) / 10;

/** Resident memory of each of Chromium's renderer processes, in MiB
 * (with one page open: the page's renderer, and at most a spare one). */
function rendererMiB() {
  try {
    const out = execSync('ps -eo rss=,pid=,args=', { encoding: 'utf8' });
    return out.split('\n').filter((l) => l.includes('--type=renderer')).map((l) => {
      const [rss, pid] = l.trim().split(/\s+/);
      // Proportional set size: shared pages (libraries, fonts) counted once
      // across the processes that share them.
      let pss = NaN;
      try {
        const m = readFileSync(`/proc/${pid}/smaps_rollup`, 'utf8').match(/^Pss:\s+(\d+)/m);
        if (m) pss = Math.round(parseInt(m[1], 10) / 1024);
      } catch (e) { /* gone */ }
      return { rss: Math.round(parseInt(rss, 10) / 1024), pss };
    });
  } catch (e) { return []; }
}

const browser = await chromium.launch({
  executablePath,
  args: ['--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
try {
  const context = await browser.newContext({ viewport: { width: 1366, height: 768 } });
  const page = await context.newPage();
  await page.goto(base + '/login');
  await page.fill('input[name=token]', token);
  await Promise.all([page.waitForURL(base + '/'), page.click('button[type=submit]')]);

  // Navigation timing: time to the last byte of the HTML (the server's
  // work) and to the load event (everything rendered).
  for (const path of ['/', '/?decision=deny', '/overview']) {
    const response = [], load = [];
    for (let i = 0; i < runs + 1; i++) {
      await page.goto(base + path, { waitUntil: 'load' });
      const t = await page.evaluate(() => {
        const n = performance.getEntriesByType('navigation')[0];
        return { response: n.responseEnd - n.startTime, load: n.loadEventEnd - n.startTime };
      });
      if (i === 0) continue; // warm-up: caches and the first asset fetch
      response.push(t.response);
      load.push(t.load);
    }
    result({ page: path, runs, response_end_ms: { median: round(median(response)), max: round(Math.max(...response)) },
      load_event_ms: { median: round(median(load)), max: round(Math.max(...load)) } });
  }

  // The live feed under load.
  await page.goto(base + '/', { waitUntil: 'load' });
  await page.waitForFunction(() => document.getElementById('live-status').textContent === 'live');
  const cdp = await context.newCDPSession(page);
  await cdp.send('Performance.enable');
  await need('stream');
  const started = Date.now();
  let maxHeap = 0, maxRenderer = 0, maxPss = 0, maxNodes = 0, maxLag = 0;
  while (Date.now() - started < liveSecs * 1000) {
    await page.waitForTimeout(sampleSecs * 1000);
    const { metrics } = await cdp.send('Performance.getMetrics');
    const m = Object.fromEntries(metrics.map((x) => [x.name, x.value]));
    const heap = m.JSHeapUsedSize / (1 << 20);
    const renderers = rendererMiB();
    const renderer = Math.max(0, ...renderers.map((r) => r.rss));
    maxPss = Math.max(maxPss, ...renderers.map((r) => r.pss));
    const shown = await page.evaluate(() => {
      const first = document.querySelector('#feed li.rec time');
      return { rows: document.querySelectorAll('#feed li.rec').length, newest: first ? first.textContent : null };
    });
    // The newest row's time is when the bench made the record: the lag is
    // how far the page is behind.
    const lag = shown.newest ? Date.now() - Date.parse(shown.newest.replace(/(\.\d{3})\d*Z$/, '$1Z')) : NaN;
    maxHeap = Math.max(maxHeap, heap); maxRenderer = Math.max(maxRenderer, renderer);
    maxNodes = Math.max(maxNodes, m.Nodes); maxLag = Math.max(maxLag, lag);
    result({ sample_s: Math.round((Date.now() - started) / 1000), js_heap_mib: round(heap), renderers_rss_mib: renderers,
      dom_nodes: m.Nodes, rows: shown.rows, lag_ms: lag });
  }
  result({ live_secs: liveSecs, max_js_heap_mib: round(maxHeap), max_renderer_rss_mib: round(maxRenderer), max_renderer_pss_mib: maxPss, max_dom_nodes: maxNodes, max_lag_ms: maxLag });
  process.stdout.write('done\n');
} finally {
  await browser.close();
  stdin.close();
}
