// The browser tests' devmesh: starts the build's real binary and plugins on free ports in a temp
// directory (http input -> patterns filter -> sqlite output, and the query output with its
// console on the input's port), seeds records through POST /ingest/logs, and builds a large
// store directly with the sqlite3 CLI for the 1M-row search.
import { spawn, execFileSync } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';

// Where the build put the binary and the plugins (given by CMake, see CMakeLists.txt).
export function buildPaths() {
  const binary = process.env.DEVMESH_BIN;
  const plugins = process.env.DEVMESH_PLUGIN_DIR;
  if (!binary || !plugins) throw new Error('DEVMESH_BIN and DEVMESH_PLUGIN_DIR must be set (ctest sets them)');
  return { binary, plugins };
}

export function tempDir(prefix) {
  return fs.mkdtempSync(path.join(os.tmpdir(), prefix));
}

export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.unref();
    s.on('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const { port } = s.address();
      s.close(() => resolve(port));
    });
  });
}

// Polls fn until it returns a truthy value; throws naming `what` after `timeout` ms.
export async function waitFor(what, fn, { timeout = 30000, interval = 50 } = {}) {
  const deadline = Date.now() + timeout;
  let last;
  for (;;) {
    try {
      const v = await fn();
      if (v) return v;
    } catch (e) {
      if (e.fatal) throw e;
      last = e;
    }
    if (Date.now() > deadline)
      throw new Error(`timed out after ${timeout} ms waiting for ${what}${last ? `: ${last.message}` : ''}`);
    await new Promise((r) => setTimeout(r, interval));
  }
}

// One devmesh process. `ingest: true` runs the whole pipeline (http -> patterns -> sqlite, and
// the query output); `ingest: false` only the query output over an existing store.
export class Devmesh {
  static async start({ dir, db, ingest = true, authToken = null, name = 'devmesh' }) {
    const { binary, plugins } = buildPaths();
    const port = await freePort();
    const metricsPort = await freePort();
    const query = [
      `name: query`,
      `match: ${ingest ? "'*'" : 'none'}`,
      `listen: 127.0.0.1:${port}`,
      `path: ${db}`,
      `flush_interval: 50ms`,
      `console: true`,
    ];
    if (authToken) query.push(`auth_token: ${authToken}`);
    const yaml = [
      'service:',
      `  plugins_dir: [${plugins}]`,
      `  http_listen: 127.0.0.1:${metricsPort}`,
      '  flush_interval: 50ms',
      'pipeline:',
      '  inputs:',
      ingest
        ? `    - {name: http, tag: http.ingest, listen: 127.0.0.1:${port}}`
        : '    - {name: dummy, tag: idle, rate: 0.001}',
      ...(ingest ? ['  filters:', "    - {name: patterns, match: '*'}"] : []),
      '  outputs:',
      ...(ingest ? [`    - {name: sqlite, match: '*', path: ${db}}`] : []),
      `    - {${query.join(', ')}}`,
      '',
    ].join('\n');
    const config = path.join(dir, `${name}.yaml`);
    fs.writeFileSync(config, yaml);
    const log = fs.openSync(path.join(dir, `${name}.log`), 'a');
    const child = spawn(binary, ['-c', config], { cwd: dir, stdio: ['ignore', log, log] });
    const d = new Devmesh(child, `http://127.0.0.1:${port}`, `http://127.0.0.1:${metricsPort}`,
      path.join(dir, `${name}.log`));
    await waitFor(`${name} to answer /health (log: ${d.logPath})`, async () => {
      if (child.exitCode !== null)
        throw Object.assign(new Error(`${name} exited with ${child.exitCode}: ${d.log()}`), { fatal: true });
      const r = await fetch(`${d.base}/health`);
      return r.status === 200;
    });
    return d;
  }

  constructor(child, base, metricsBase, logPath) {
    this.child = child;
    this.base = base;
    this.metricsBase = metricsBase;
    this.logPath = logPath;
  }

  log() {
    return fs.readFileSync(this.logPath, 'utf8');
  }

  // The value of a metric series (summed over label sets matching `labels`), 0 when absent.
  async metric(name, labels = '') {
    const text = await (await fetch(`${this.metricsBase}/metrics`)).text();
    let sum = 0;
    for (const line of text.split('\n')) {
      if (!line.startsWith(name)) continue;
      const rest = line.slice(name.length);
      if (!(rest.startsWith(' ') || rest.startsWith('{'))) continue;
      if (labels && !rest.includes(labels)) continue;
      sum += Number(line.split(' ').pop());
    }
    return sum;
  }

  async post(records) {
    const r = await fetch(`${this.base}/ingest/logs`, {
      method: 'POST',
      headers: { 'Content-Type': 'application/json' },
      body: JSON.stringify({ logs: records }),
    });
    if (r.status !== 200) throw new Error(`POST /ingest/logs: ${r.status} ${await r.text()}`);
    return r.json();
  }

  async query(pathAndQuery, token = null) {
    const headers = token ? { Authorization: `Bearer ${token}` } : {};
    const r = await fetch(`${this.base}${pathAndQuery}`, { headers });
    if (r.status !== 200) throw new Error(`GET ${pathAndQuery}: ${r.status} ${await r.text()}`);
    return r.json();
  }

  async stop() {
    if (this.child.exitCode !== null) return;
    const exited = new Promise((r) => this.child.once('exit', r));
    this.child.kill('SIGTERM');
    const timer = setTimeout(() => this.child.kill('SIGKILL'), 20000);
    await exited;
    clearTimeout(timer);
  }
}

// The seeded store: services, hosts, levels and trace ids over the last 50 minutes, denser
// towards the end and with an error burst, so the histogram has shape. Records whose message says
// "checkout" come in traces of four records across services; the ERROR ones among them are what
// the test filters to.
export const SERVICES = ['api', 'billing', 'web', 'worker'];
export const HOSTS = ['node-1', 'node-2', 'node-3'];
export const SEARCH_WORD = 'checkout';

export function seedRecords(now = Date.now(), count = 1500) {
  const templates = [
    ['INFO', (i) => `request GET /items/${i % 97} handled in ${(i * 7) % 300} ms`],
    ['INFO', (i) => `user ${i % 211} logged in from 10.0.${i % 7}.${i % 250}`],
    ['DEBUG', (i) => `cache miss for key item-${i % 503}`],
    ['WARN', (i) => `slow query took ${500 + (i % 900)} ms`],
    ['ERROR', (i) => `upstream db-${i % 3} returned 503`],
  ];
  const span = 50 * 60 * 1000;
  const out = [];
  for (let i = 0; i < count; i++) {
    // sqrt spreads the rows thinner at the start of the range than at its end.
    const t = now - span + Math.floor(span * Math.sqrt((i + 1) / count)) - 1000;
    const burst = t > now - 12 * 60 * 1000 && t < now - 9 * 60 * 1000;
    const [level, text] = templates[burst && i % 2 ? 4 : i % 4];
    out.push({
      timestamp: new Date(t).toISOString(),
      service: SERVICES[i % SERVICES.length],
      host: HOSTS[(i >> 2) % HOSTS.length],
      level,
      message: text(i),
      trace_id: i % 3 === 0 ? `trace-${Math.floor(i / 6)}` : undefined,
      meta_json: { seq: i, region: i % 2 ? 'eu' : 'us' },
    });
  }
  // 12 checkout traces, four records each across services: one ERROR, the rest INFO/WARN.
  for (let k = 0; k < 12; k++) {
    const t = now - span + Math.floor((span * (k + 1)) / 13);
    const trace = `checkout-${String(k).padStart(4, '0')}`;
    ['web', 'api', 'billing', 'worker'].forEach((service, j) => {
      out.push({
        timestamp: new Date(t + j * 15).toISOString(),
        service,
        host: HOSTS[(k + j) % HOSTS.length],
        level: j === 2 ? 'ERROR' : j === 3 ? 'WARN' : 'INFO',
        message: j === 2 ? `checkout ${k} failed: card declined by provider ${k % 3}`
          : `checkout ${k} step ${j} done in ${10 + j} ms`,
        trace_id: trace,
        meta_json: { order: 1000 + k, step: j, nested: { cart: [k, j], ok: j !== 2 } },
      });
    });
  }
  return out;
}

// Seeds the records and waits until the store holds all of them.
export async function seed(devmesh, records) {
  for (let i = 0; i < records.length; i += 500) await devmesh.post(records.slice(i, i + 500));
  const start = new Date(Date.now() - 2 * 3600 * 1000).toISOString();
  await waitFor(`${records.length} seeded records in the store`, async () => {
    const stats = await devmesh.query(`/query/stats?start_time=${start}`);
    return stats.total >= records.length;
  });
}

// A store of `rows` records written directly with the sqlite3 CLI in the sqlite output's own
// schema (the output creates the tables, then the CLI fills them): the last 24 h, 20 services, 5
// hosts, one row in 100 with the word "needle", a trace id on a third of them, and the full-text
// index rebuilt. Seconds rather than the minutes ingesting 1M records would take.
export function buildLargeStore(dir, rows) {
  const { binary, plugins } = buildPaths();
  const db = path.join(dir, 'large.db');
  const config = path.join(dir, 'schema.yaml');
  fs.writeFileSync(config, [
    'service:',
    `  plugins_dir: [${plugins}]`,
    '  exit_when_done: true',
    'pipeline:',
    '  inputs:',
    '    - {name: dummy, rate: 0, count: 1, service: setup}',
    '  outputs:',
    `    - {name: sqlite, path: ${db}}`,
    '',
  ].join('\n'));
  execFileSync(binary, ['-c', config], { cwd: dir, stdio: ['ignore', 'ignore', 'inherit'], timeout: 60000 });
  const nowNs = BigInt(Date.now()) * 1000000n;
  const spanNs = 24n * 3600n * 1000000000n;
  const step = spanNs / BigInt(rows);
  const start = nowNs - spanNs;
  const sql = `
PRAGMA journal_mode=WAL; PRAGMA synchronous=OFF; PRAGMA cache_size=-262144; PRAGMA temp_store=MEMORY;
DELETE FROM log_events; DELETE FROM log_patterns;
INSERT INTO log_events_fts(log_events_fts) VALUES('delete-all');
BEGIN;
WITH RECURSIVE n(i) AS (SELECT 0 UNION ALL SELECT i + 1 FROM n WHERE i < ${rows - 1})
INSERT INTO log_events (timestamp, source, service, host, level, trace_id, message, meta_json,
                        event_id, pattern_id)
SELECT ${start} + i * ${step}, 'bench',
       printf('service-%02d', i % 20), printf('node-%d', (i / 20) % 5),
       CASE WHEN i % 50 = 7 THEN 'ERROR' WHEN i % 10 = 3 THEN 'WARN' WHEN i % 13 = 5 THEN 'DEBUG'
            ELSE 'INFO' END,
       CASE WHEN i % 3 = 0 THEN 'trace-' || (i / 6) END,
       CASE WHEN i % 100 = 42 THEN 'needle found in haystack ' || i
            ELSE 'request ' || i || ' handled in ' || (i % 300) || ' ms' END,
       '{"seq":' || i || '}',
       randomblob(16), NULL
FROM n;
COMMIT;
INSERT INTO log_events_fts(log_events_fts) VALUES('rebuild');
PRAGMA wal_checkpoint(TRUNCATE);
`;
  execFileSync('sqlite3', [db], { input: sql, stdio: ['pipe', 'ignore', 'inherit'], timeout: 600000 });
  return db;
}
