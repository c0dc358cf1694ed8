// Issue 14's "a search over 1M rows shows in the page within 300 ms": a store of 1M rows built
// with the sqlite3 CLI in the sqlite output's schema, the query output alone on it, and the
// console in Debian's chromium searching it over 24 h. Prints each search's
// window.devmeshConsole.lastSearchMs (submit to rows rendered) and prints them with their median
// next to the bound (printed, not asserted). BROWSER_PERF_ROWS changes the size.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import { after, before, test } from 'node:test';

import { Screenshots, launch } from './browser.mjs';
import { Devmesh, buildLargeStore, tempDir, waitFor } from './devmesh.mjs';

const ROWS = Number(process.env.BROWSER_PERF_ROWS || 1000000);
const WAIT = { timeout: 60000 };
let dir, devmesh, browser, page;

before(async () => {
  dir = tempDir('devmesh-browser-perf-');
  const t0 = Date.now();
  const db = buildLargeStore(dir, ROWS);
  console.log(`store: ${ROWS} rows built in ${Date.now() - t0} ms (${db})`);
  devmesh = await Devmesh.start({ dir, db, ingest: false });
  browser = await launch();
  page = browser.context.pages()[0] ?? await browser.context.newPage();
});

after(async () => {
  await browser?.close();
  await devmesh?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

test(`a search over ${ROWS} rows shows in the page (time printed; issue 14's target 300 ms)`, async () => {
  const inflight = new Set();
  page.on('request', (r) => inflight.add(r));
  for (const ev of ['requestfinished', 'requestfailed']) page.on(ev, (r) => inflight.delete(r));
  await page.goto(`${devmesh.base}/`);
  const fcp = await page.evaluate(() => performance.getEntriesByName('first-contentful-paint')[0]?.startTime);
  console.log(`time: first contentful paint: ${Math.round(fcp)} ms`);
  await page.waitForFunction(() => window.devmeshConsole?.ready === true, null, WAIT);
  await page.selectOption('#range', '24h');
  await page.waitForFunction(() => document.querySelectorAll('#results tr.row').length > 0, null, WAIT);
  // Two searches alternate, so that each submit is a new search of the store; both find the
  // 1% of rows (10,000 of 1M) that say "needle found".
  const words = ['needle', 'needle found'];
  const ms = [];
  for (let i = 0; i < 7; i++) {
    const word = words[i % 2];
    // A user searches a page that has finished loading: each search starts once the page's
    // requests (rows, facets, histogram, patterns of the last one) have all been answered.
    await waitFor('the page to finish its requests', () => inflight.size === 0, { timeout: 60000 });
    await page.evaluate(() => { window.devmeshConsole.lastSearchMs = null; });
    await page.fill('#search', word);
    await page.press('#search', 'Enter');
    await page.waitForFunction(() => {
      const trs = [...document.querySelectorAll('#results tr.row')];
      return window.devmeshConsole.lastSearchMs != null && trs.length > 0 &&
        trs.every((tr) => tr.querySelector('td.message').textContent.includes('needle'));
    }, null, WAIT);
    ms.push(Math.round(await page.evaluate(() => window.devmeshConsole.lastSearchMs)));
  }
  await new Screenshots('perf-').take(page, 'search-1m');
  const median = [...ms].sort((a, b) => a - b)[Math.floor(ms.length / 2)];
  console.log(`time: search over ${ROWS} rows (lastSearchMs): ${ms.join(', ')} ms; median ${median} ms`);
  // Printed, not failed on: this test is about the search; the functional test fails on errors.
  for (const e of browser.errors) console.log(`note: browser error: ${e.text} (${e.location?.url ?? e.page})`);
  // The figure is printed, never asserted: machines are shared and noisy (the project's rule
  // for timings). What is asserted: every search found its rows and showed them.
  console.log(`figure: median search ${median} ms against issue 14's 300 ms (${median <= 300 ? 'within' : 'over'})`);
  assert.equal(ms.length, 7);
});
