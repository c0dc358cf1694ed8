// Issue 14's "Must show, in a real browser": the console served by the query output, driven in
// Debian's chromium against a real devmesh with seeded records, through the DOM contract
// (docs: README "Console"). Each step is a test, in order, on one page; each keeps a
// screenshot. Any console error or page error in the browser fails the run. Prints the first
// paint, the search time (window.devmeshConsole.lastSearchMs), the tail latency and the longest
// frame gap while tailing 1,000 records/s.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { createRequire } from 'node:module';

import { Screenshots, launch } from './browser.mjs';
import { Devmesh, SEARCH_WORD, SERVICES, seed, seedRecords, tempDir, waitFor } from './devmesh.mjs';

const AXE = createRequire(import.meta.url).resolve('axe-core/axe.min.js');
const TOKEN = 's3cret-browser-token';
const WAIT = { timeout: 30000 };

let dir, devmesh, authed, browser, page, shots;
const times = {};
const requests = [];

// The steps build on each other (one page, in order): after a failed step the rest are skipped
// rather than each waiting out its timeouts on a page in an unknown state.
let failed = null;
function step(name, fn) {
  test(name, async (t) => {
    if (failed) return t.skip(`after the failed step "${failed}"`);
    try {
      await fn(t);
    } catch (e) {
      failed = name;
      if (page) await shots?.take(page, 'failed').catch(() => {});
      throw e;
    }
  });
}

// The rows #results shows, as the contract marks them up.
function rows(p = page) {
  return p.$$eval('#results tr.row', (trs) => trs.map((tr) => ({
    id: tr.dataset.id,
    live: tr.classList.contains('live'),
    ts: tr.querySelector('td.ts')?.textContent.trim(),
    level: tr.querySelector('td.level')?.textContent.trim(),
    service: tr.querySelector('td.service')?.textContent.trim(),
    host: tr.querySelector('td.host')?.textContent.trim(),
    message: tr.querySelector('td.message')?.textContent.trim(),
  })));
}

// The ids of every stored row matching `params`, from the API itself.
async function apiIds(params) {
  const q = new URLSearchParams({ limit: '10000', start_time: new Date(Date.now() - 3 * 3600e3).toISOString(), ...params });
  return (await devmesh.query(`/query/logs?${q}`)).map((r) => String(r.id)).sort();
}

// Submits a search and waits until its rows are rendered; lastSearchMs is cleared first so the
// page's own figure for this search is the one read.
async function search(p, word) {
  await p.evaluate(() => { window.devmeshConsole.lastSearchMs = null; });
  await p.fill('#search', word);
  await p.press('#search', 'Enter');
  await p.waitForFunction((w) => {
    const trs = [...document.querySelectorAll('#results tr.row')];
    return window.devmeshConsole.lastSearchMs != null && trs.length > 0 &&
      trs.every((tr) => tr.querySelector('td.message').textContent.toLowerCase().includes(w));
  }, word.split(' ')[0], WAIT);
  return p.evaluate(() => window.devmeshConsole.lastSearchMs);
}

async function selectRange(p, value) {
  await p.selectOption('#range', value);
  await p.waitForFunction(() => document.querySelectorAll('#results tr.row').length > 0, null, WAIT);
}

async function dialogOpen(p, selector) {
  return p.$eval(selector, (d) => {
    const style = getComputedStyle(d);
    const shown = (d.tagName === 'DIALOG' ? d.open : !d.hidden) && style.display !== 'none' &&
      style.visibility !== 'hidden';
    return shown;
  }).catch(() => false);
}

before(async () => {
  dir = tempDir('devmesh-browser-');
  devmesh = await Devmesh.start({ dir, db: path.join(dir, 'devmesh.db') });
  await seed(devmesh, seedRecords());
  browser = await launch();
  browser.context.on('request', (r) => requests.push(r.url()));
  page = browser.context.pages()[0] ?? await browser.context.newPage();
  shots = new Screenshots();
});

after(async () => {
  for (const [what, ms] of Object.entries(times)) console.log(`time: ${what}: ${ms} ms`);
  await browser?.close();
  await authed?.stop();
  await devmesh?.stop();
  if (dir) fs.rmSync(dir, { recursive: true, force: true });
});

step('the page loads from GET / and renders its first results', async () => {
  await page.goto(`${devmesh.base}/`);
  await page.waitForFunction(() => window.devmeshConsole?.ready === true, null, WAIT);
  const fcp = await page.evaluate(() =>
    performance.getEntriesByName('first-contentful-paint')[0]?.startTime);
  assert.ok(fcp > 0, 'the performance API has a first-contentful-paint entry');
  times['first contentful paint'] = Math.round(fcp);
  for (const id of ['#range', '#search', '#search-button', '#facets', '#facet-service', '#facet-host',
    '#facet-level', '#histogram', '#results', '#results-status', '#results-end', '#tail-toggle',
    '#patterns', '#patterns-new', '#context', '#context-load', '#context-copy'])
    assert.ok(await page.$(id), `the page has ${id}`);
  assert.equal(await page.getAttribute('#search', 'type'), 'search');
  const label = await page.$eval('#search', (e) => e.labels?.[0]?.textContent || e.getAttribute('aria-label') || '');
  assert.match(label, /search/i, '#search is labelled "Search"');
  await selectRange(page, '1h');
  await page.waitForFunction(() => /\d+ rows?/.test(document.querySelector('#results-status').textContent), null, WAIT);
  const counts = await page.$$eval('#facet-service button.facet', (bs) =>
    Object.fromEntries(bs.map((b) => [b.dataset.value, b.querySelector('span.count')?.textContent.trim()])));
  for (const s of ['api', 'billing', 'web', 'worker']) assert.match(counts[s] ?? '', /\d/, `facet service ${s} shows a count`);
  assert.ok(await page.$('#histogram canvas'), 'the histogram has drawn its canvas');
  await shots.take(page, 'loaded');
});

step('more rows load when the end of the results scrolls into view', async () => {
  const before = (await rows()).length;
  const total = (await apiIds({ start_time: new Date(Date.now() - 3600e3).toISOString() })).length;
  assert.ok(before < total, `the first page (${before} rows) is not all of the ${total} rows`);
  await page.locator('#results-end').scrollIntoViewIfNeeded();
  await page.waitForFunction((n) => document.querySelectorAll('#results tr.row').length > n, before, WAIT);
  const after = await rows();
  assert.equal(new Set(after.map((r) => r.id)).size, after.length, 'no row shows twice');
  await shots.take(page, 'scrolled');
});

step('a search shows exactly the rows the API finds', async () => {
  await page.evaluate(() => window.scrollTo(0, 0));
  const ms = await search(page, SEARCH_WORD);
  times['search (lastSearchMs, seeded store)'] = Math.round(ms);
  const shown = (await rows()).map((r) => r.id).sort();
  assert.deepEqual(shown, await apiIds({ q: SEARCH_WORD, start_time: new Date(Date.now() - 3600e3).toISOString() }));
  await shots.take(page, 'searched');
});

step('the level facet filters the results to that level', async () => {
  const error = page.locator('#facet-level button.facet[data-value="ERROR"]');
  await error.click();
  // The facets are drawn again from the new counts: the pressed button is the redrawn one.
  await page.waitForSelector('#facet-level button.facet[data-value="ERROR"][aria-pressed="true"]', WAIT);
  await page.waitForFunction(() => {
    const trs = [...document.querySelectorAll('#results tr.row')];
    return trs.length > 0 && trs.every((tr) => tr.querySelector('td.level').textContent.trim() === 'ERROR');
  }, null, WAIT);
  const shown = await rows();
  assert.ok(shown.every((r) => r.message.toLowerCase().includes(SEARCH_WORD)), 'the search still applies');
  assert.equal(shown.length, 12, 'the twelve checkout errors');
  await shots.take(page, 'level-facet');
});

step('dragging across the histogram zooms the range to the selection', async () => {
  const area = (await page.$('#histogram .u-over')) ?? (await page.$('#histogram'));
  const box = await area.boundingBox();
  const y = box.y + box.height / 2;
  await page.mouse.move(box.x + box.width * 0.2, y);
  await page.mouse.down();
  await page.mouse.move(box.x + box.width * 0.5, y, { steps: 8 });
  await page.mouse.move(box.x + box.width * 0.8, y, { steps: 8 });
  await page.mouse.up();
  await page.waitForFunction(() => document.querySelector('#range').value === 'custom', null, WAIT);
  const [start, end] = await Promise.all(['#range-start', '#range-end'].map((s) => page.inputValue(s)));
  const span = Date.parse(`${end}Z`) - Date.parse(`${start}Z`);
  assert.ok(span > 0 && span < 3600e3 * 0.9, `the range shrank to the selection (${start} .. ${end})`);
  assert.ok(Date.parse(`${start}Z`) > Date.now() - 3600e3 - 60e3, 'the selection starts inside the hour shown');
  await page.waitForFunction(() => {
    const trs = [...document.querySelectorAll('#results tr.row')];
    return trs.length > 0 && trs.length < 12 &&
      trs.every((tr) => tr.querySelector('td.level').textContent.trim() === 'ERROR');
  }, null, WAIT);
  await shots.take(page, 'zoomed');
});

let traceId;
step('a row opens its detail: every column, meta_json pretty-printed, trace and pattern links', async () => {
  const first = page.locator('#results tr.row').first();
  const id = await first.getAttribute('data-id');
  await first.click();
  await page.waitForFunction(() => {
    const d = document.querySelector('#detail');
    return d && (d.tagName === 'DIALOG' ? d.open : !d.hidden);
  }, null, WAIT);
  const role = await page.$eval('#detail', (d) => d.tagName === 'DIALOG' || (d.getAttribute('role') === 'dialog' && d.getAttribute('aria-modal') === 'true'));
  assert.ok(role, '#detail is a dialog (or role=dialog with aria-modal)');
  const [row] = (await devmesh.query(`/query/logs?start_time=${new Date(Date.now() - 3 * 3600e3).toISOString()}&limit=10000`))
    .filter((r) => String(r.id) === id);
  const terms = await page.$$eval('#detail dl dt', (dts) => dts.map((d) => d.textContent.trim().toLowerCase()));
  assert.ok(terms.length >= 12, `the detail lists every column (${terms.join(', ')})`);
  const meta = await page.textContent('#detail pre#detail-meta');
  assert.ok(meta.includes('\n'), 'meta_json is pretty-printed');
  assert.deepEqual(JSON.parse(meta), row.meta_json);
  const trace = await page.getAttribute('#detail a#detail-trace', 'href');
  traceId = decodeURIComponent(trace.match(/trace_id=([^&#]+)/)[1]);
  assert.equal(traceId, row.trace_id);
  assert.match(await page.getAttribute('#detail a#detail-pattern', 'href'), new RegExp(`pattern_id=${row.pattern_id}`));
  await shots.take(page, 'detail');
  await page.keyboard.press('Escape');
  await page.waitForFunction(() => {
    const d = document.querySelector('#detail');
    return d.tagName === 'DIALOG' ? !d.open : d.hidden || getComputedStyle(d).display === 'none';
  }, null, WAIT);
  await first.focus();
  await page.keyboard.press('Enter');
  assert.ok(await page.waitForFunction(() => {
    const d = document.querySelector('#detail');
    return d.tagName === 'DIALOG' ? d.open : !d.hidden;
  }, null, WAIT), 'Enter on a focused row opens the detail');
});

step('the detail\'s trace link shows only rows of that trace', async () => {
  // Rows rendered before the link are marked: the answer is in rows rendered after it.
  await page.$$eval('#results tr.row', (trs) => trs.forEach((tr) => { tr.dataset.before = '1'; }));
  await page.click('#detail a#detail-trace');
  await page.waitForFunction(() => {
    const trs = [...document.querySelectorAll('#results tr.row')];
    return trs.length > 0 && trs.every((tr) => !tr.dataset.before);
  }, null, WAIT);
  const want = await apiIds({ trace_id: traceId });
  assert.equal(want.length, 4);
  // Every row shown is one of the trace's (the page may keep other filters, such as the level).
  const shown = await waitFor(`the rows of trace ${traceId}`, async () => {
    const ids = (await rows()).map((r) => r.id);
    return ids.length > 0 && ids.every((i) => want.includes(i)) && ids;
  });
  console.log(`trace ${traceId}: the page shows ${shown.length} of its ${want.length} rows`);
  await shots.take(page, 'trace');
});

step('a record posted to /ingest/logs appears in the live tail within 1 s', async () => {
  await page.goto(`${devmesh.base}/`);
  await page.waitForFunction(() => window.devmeshConsole?.ready === true, null, WAIT);
  const clients = await devmesh.metric('devmesh_query_tail_clients');
  await page.click('#tail-toggle');
  assert.equal(await page.getAttribute('#tail-toggle', 'aria-pressed'), 'true');
  await waitFor('the page to subscribe to /tail', async () =>
    (await devmesh.metric('devmesh_query_tail_clients')) > clients);
  const probe = `tail probe ${Math.random().toString(36).slice(2)}`;
  await page.evaluate((text) => {
    window.__probeSeen = null;
    new MutationObserver((_, obs) => {
      for (const tr of document.querySelectorAll('#results tr.row.live'))
        if (tr.textContent.includes(text)) {
          window.__probeSeen = Date.now();
          obs.disconnect();
        }
    }).observe(document.querySelector('#results'), { childList: true, subtree: true, characterData: true });
  }, probe);
  const sent = Date.now();
  await devmesh.post([{ service: 'api', host: 'node-1', level: 'INFO', message: probe }]);
  const seen = await page.waitForFunction(() => window.__probeSeen, null, WAIT).then((h) => h.jsonValue());
  const latency = seen - sent;
  times['tail latency (POST /ingest/logs to the row in #results)'] = latency;
  const top = (await rows())[0];
  assert.ok(top.live && top.message.includes(probe), 'the new row is at the top, marked live');
  await shots.take(page, 'tail');
  assert.ok(latency < 1000, `the tail showed the record in ${latency} ms (issue 14: within 1 s)`);
});

step('while tailing 1,000 records/s the page keeps drawing frames and caps the rows it keeps', async () => {
  const before = (await rows()).length;
  // The longest gap between animation frames while the records stream in: printed, not asserted.
  await page.evaluate(() => {
    window.__maxFrameGap = 0;
    window.__framing = true;
    let last = performance.now();
    const tick = (now) => {
      window.__maxFrameGap = Math.max(window.__maxFrameGap, now - last);
      last = now;
      if (window.__framing) requestAnimationFrame(tick);
    };
    requestAnimationFrame(tick);
  });
  const seconds = 3;
  const perTick = 100;
  const start = Date.now();
  for (let i = 0; i < seconds * 10; i++) {
    const batch = Array.from({ length: perTick }, (_, j) => ({
      service: SERVICES[j % SERVICES.length], host: 'node-1', level: 'INFO',
      message: `burst record ${i * perTick + j}`,
    }));
    await devmesh.post(batch);
    const wait = start + (i + 1) * 100 - Date.now();
    if (wait > 0) await new Promise((r) => setTimeout(r, wait));
  }
  const last = `burst record ${seconds * 10 * perTick - 1}`;
  await page.waitForFunction((text) => [...document.querySelectorAll('#results tr.row.live')]
    .some((tr) => tr.textContent.includes(text)), last, WAIT);
  const gap = await page.evaluate(() => { window.__framing = false; return window.__maxFrameGap; });
  times['longest frame gap while tailing 1,000 records/s'] = Math.round(gap);
  const kept = (await rows()).length;
  console.log(`tail burst: ${seconds * 10 * perTick} records in ${Date.now() - start} ms; the table keeps ${kept} rows`);
  assert.ok(kept < before + seconds * 10 * perTick, `the table caps its rows (${kept} kept)`);
  await shots.take(page, 'tail-burst');
  await page.click('#tail-toggle');
  assert.equal(await page.getAttribute('#tail-toggle', 'aria-pressed'), 'false');
});

step('the patterns view lists the range\'s patterns with counts and sparklines', async () => {
  await selectRange(page, '1h');
  await page.locator('#patterns').scrollIntoViewIfNeeded();
  await page.waitForFunction(() => document.querySelectorAll('#patterns li.pattern').length > 0, null, WAIT);
  const patterns = await page.$$eval('#patterns li.pattern', (lis) => lis.map((li) => ({
    id: li.dataset.patternId,
    template: li.querySelector('span.template')?.textContent.trim(),
    count: li.querySelector('span.count')?.textContent.trim(),
    spark: !!li.querySelector('svg, canvas'),
  })));
  for (const p of patterns) {
    assert.match(p.id, /^[0-9a-f]{16}$/);
    assert.ok(p.template, `pattern ${p.id} shows its template`);
    assert.match(p.count, /\d/, `pattern ${p.id} shows its count`);
  }
  await page.waitForFunction(() => [...document.querySelectorAll('#patterns li.pattern')]
    .every((li) => li.querySelector('svg, canvas')), null, WAIT);
  assert.ok(patterns.some((p) => /checkout/.test(p.template)), 'the checkout patterns are listed');
  await shots.take(page, 'patterns');
  // Every seeded pattern was first seen inside the hour shown: "only new" keeps them.
  await page.check('#patterns-new');
  await page.waitForFunction(() => document.querySelectorAll('#patterns li.pattern').length > 0, null, WAIT);
  await page.uncheck('#patterns-new');
});

step('the context pack loads and its copy button copies it', async () => {
  await browser.context.grantPermissions(['clipboard-read', 'clipboard-write'], { origin: devmesh.base });
  await page.locator('#context').scrollIntoViewIfNeeded();
  await page.click('#context-load');
  await page.waitForFunction(() => document.querySelector('pre#context-text').textContent.trim().length > 0, null, WAIT);
  const text = await page.textContent('pre#context-text');
  assert.match(text, /ERROR|WARN/, 'the pack names the error and warning patterns');
  await page.click('#context-copy');
  await waitFor('the clipboard to hold the pack', async () =>
    (await page.evaluate(() => navigator.clipboard.readText())) === text);
  await shots.take(page, 'context');
});

// axe-core's serious and critical violations on the page as it is now, each printed.
async function axeViolations(p, what) {
  // Evaluated through the DevTools protocol: the page's Content-Security-Policy (rightly) refuses
  // an injected <script>, and turning CSP off for the test would hide the page's own violations.
  if (!(await p.evaluate(() => !!window.axe))) await p.evaluate(fs.readFileSync(AXE, 'utf8'));
  const results = await p.evaluate(() => window.axe.run(document, { resultTypes: ['violations'] }));
  for (const v of results.violations)
    console.log(`axe (${what}): ${v.impact}: ${v.id}: ${v.help} (${v.nodes.length} nodes: ${v.nodes.slice(0, 3).map((n) => n.target.join(' ')).join('; ')})`);
  return results.violations.filter((v) => v.impact === 'serious' || v.impact === 'critical')
    .map((v) => `${v.impact}: ${v.id}: ${v.nodes.map((n) => n.target.join(' ')).join('; ')}`);
}

step('axe-core finds no serious or critical violations', async () => {
  await page.evaluate(() => window.scrollTo(0, 0));
  // The pointer rests on no element, so the check sees the page's own state, not a hover.
  await page.mouse.move(0, 799);
  assert.deepEqual(await axeViolations(page, 'page'), []);
});

// The same with a row hovered: the level colours keep 4.5:1 on the hover background too.
test('axe-core finds no serious or critical violations with a row hovered', async () => {
    const info = page.locator('#results tr.row:has(td.level:text-is("INFO"))').first();
    await info.hover();
    assert.deepEqual(await axeViolations(page, 'row hovered'), []);
    await page.mouse.move(0, 799);
  });

step('at 390x844 the body does not overflow horizontally', async () => {
  await page.setViewportSize({ width: 390, height: 844 });
  await page.evaluate(() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r))));
  const m = await page.evaluate(() => ({
    inner: window.innerWidth, doc: document.documentElement.scrollWidth, body: document.body.scrollWidth,
  }));
  assert.ok(m.doc <= m.inner && m.body <= m.inner, `scroll widths ${m.doc}/${m.body} within ${m.inner}`);
  await shots.take(page, 'phone');
  await page.setViewportSize({ width: 1280, height: 800 });
});

step('with auth_token the page asks for the token, then works', async () => {
  authed = await Devmesh.start({ dir, db: path.join(dir, 'devmesh.db'), ingest: false, authToken: TOKEN, name: 'authed' });
  const p = await browser.context.newPage();
  await p.goto(`${authed.base}/`);
  await p.waitForFunction(() => {
    const d = document.querySelector('#token-dialog');
    return d && (d.tagName === 'DIALOG' ? d.open : !d.hidden);
  }, null, WAIT);
  await shots.take(p, 'token-dialog');
  await p.fill('#token-dialog input#token', TOKEN);
  await p.click('#token-dialog button#token-save');
  await p.waitForFunction(() => !document.querySelector('#token-dialog').open &&
    window.devmeshConsole?.ready === true, null, WAIT);
  await selectRange(p, '1h');
  assert.equal(await p.evaluate(() => sessionStorage.length > 0), true, 'the token is kept for the session');
  // /tail takes the token as the devmesh_token cookie (EventSource sends no header).
  const clients = await authed.metric('devmesh_query_tail_clients');
  await p.click('#tail-toggle');
  await waitFor('the authenticated page to subscribe to /tail', async () =>
    (await authed.metric('devmesh_query_tail_clients')) > clients);
  await shots.take(p, 'token-accepted');
  await p.close();
});

test('the browser reported no console errors or page errors, and asked nothing of the internet', async () => {
  // The page's own 401s are what makes it ask for the token: Chromium logs each as an error.
  const authedBase = authed?.base ?? '\u0000';
  const errors = browser.errors.filter((e) =>
    !(e.page.startsWith(authedBase) && /status of 401/.test(e.text)));
  assert.deepEqual(errors, []);
  assert.deepEqual(await page.evaluate(() => window.devmeshConsole.errors), []);
  const outside = requests.filter((u) => !u.startsWith(devmesh.base) && !u.startsWith(authedBase) &&
    !u.startsWith('data:') && !u.startsWith('blob:'));
  assert.deepEqual(outside, []);
});
