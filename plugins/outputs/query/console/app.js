// The devmesh console's behaviour: reads the query API (/query/logs, /query/stats,
// /query/patterns, /query/context, /tail) and renders the page. No framework, no build step: this
// file is served as is from query.so. The filters live in the URL, so a link reproduces a view.
"use strict";

(() => {
  const state = {
    range: "1h", // 5m | 1h | 24h | custom
    start: null, // ms, for custom
    end: null,
    q: "",
    service: "",
    host: "",
    level: "",
    trace_id: "",
    pattern_id: "",
  };
  const RANGES = { "5m": 5 * 60e3, "1h": 3600e3, "24h": 24 * 3600e3 };
  const PAGE = 100;
  const MAX_ROWS = 2000; // rows kept in the table while tailing
  const BUCKETS = 30;
  // Bottom of the stack first: errors stay visible under a mass of INFO.
  const LEVELS = ["FATAL", "CRITICAL", "ERROR", "WARNING", "WARN", "INFO", "DEBUG"];
  const COLORS = {
    FATAL: "#4a148c", CRITICAL: "#7b1fa2", ERROR: "#c62828", WARNING: "#e07b00", WARN: "#e69500",
    INFO: "#1f6feb", DEBUG: "#8c959f", other: "#57606a",
  };

  // For the browser tests (and anyone curious): lastHistogramMs is from the search to the chart.
  const api = { errors: [], ready: false, lastSearchMs: null, lastHistogramMs: null };
  window.devmeshConsole = api;
  const $ = (id) => document.getElementById(id);

  function report(what, err) {
    const msg = `${what}: ${err && err.message ? err.message : err}`;
    api.errors.push(msg);
  }

  // ---- the API, with the token ------------------------------------------------------------
  let token = sessionStorage.getItem("devmesh_token") || "";
  let tokenAsked = null; // a pending dialog, shared by every request that got a 401

  function askToken() {
    if (tokenAsked) return tokenAsked;
    const dialog = $("token-dialog");
    tokenAsked = new Promise((resolve) => {
      const form = $("token-form");
      const done = (ev) => {
        ev.preventDefault();
        const value = $("token").value.trim();
        if (!value) return;
        form.removeEventListener("submit", done);
        token = value;
        sessionStorage.setItem("devmesh_token", token);
        setTokenCookie();
        dialog.close();
        tokenAsked = null;
        resolve();
      };
      form.addEventListener("submit", done);
      $("token").value = "";
      if (!dialog.open) dialog.showModal();
      $("token").focus();
    });
    return tokenAsked;
  }

  // EventSource cannot send headers: /tail takes the token as this cookie (when its characters
  // are allowed in a cookie; else as the token parameter, see tailUrl).
  const COOKIE_SAFE = /^[\x21\x23-\x2B\x2D-\x3A\x3C-\x5B\x5D-\x7E]+$/;
  function setTokenCookie() {
    if (token && COOKIE_SAFE.test(token))
      document.cookie = `devmesh_token=${token}; path=/; SameSite=Strict`;
  }
  setTokenCookie();

  // GET path?params; JSON unless text; retries once on a busy server (503 with Retry-After) and
  // asks for the token on a 401. Throws Error(message from the API's {"error":...}).
  // Until one call has answered, the others wait for it: on a server with auth_token only that
  // one gets the 401 (and the dialog), the rest go out with the token.
  let firstCall = null;
  let authKnown = false;
  async function get(path, params, options) {
    if (!authKnown && firstCall) await firstCall.catch(() => {});
    const call = request(path, params, options);
    if (!authKnown && !firstCall) {
      firstCall = call;
      call.finally(() => { authKnown = true; }).catch(() => {});
    }
    return call;
  }

  async function request(path, params, { text = false, signal } = {}) {
    const qs = new URLSearchParams();
    for (const [k, v] of Object.entries(params || {}))
      if (v !== "" && v !== null && v !== undefined) qs.set(k, v);
    const url = path + (qs.toString() ? "?" + qs : "");
    for (let attempt = 0; ; attempt++) {
      const headers = {};
      if (token) headers.Authorization = "Bearer " + token;
      const res = await fetch(url, { headers, signal });
      if (res.status === 401) {
        await askToken();
        continue;
      }
      if (res.status === 503 && res.headers.get("Retry-After") && attempt < 5) {
        const wait = Math.min(5, Number(res.headers.get("Retry-After")) || 1) * 1000;
        await new Promise((r) => setTimeout(r, wait * (0.5 + Math.random() / 2)));
        continue;
      }
      if (!res.ok) {
        let message = `${res.status} ${res.statusText}`;
        try {
          const body = await res.json();
          if (body && body.error) message = body.error;
        } catch (_) { /* not JSON: keep the status line */ }
        throw new Error(`${path}: ${message}`);
      }
      return text ? res.text() : res.json();
    }
  }

  // ---- times ------------------------------------------------------------------------------
  // The API answers UTC without a zone (the prototype's form) or with Z.
  function parseTs(s) {
    if (!s) return NaN;
    return Date.parse(/[zZ]|[+-]\d\d:?\d\d$/.test(s) ? s : s + "Z");
  }
  const epoch = (ms) => (ms / 1000).toFixed(3);
  function toLocalInput(ms) {
    const d = new Date(ms);
    const p = (n) => String(n).padStart(2, "0");
    return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
  }
  function fromLocalInput(v) {
    const ms = new Date(v).getTime(); // datetime-local values are local time
    return Number.isFinite(ms) ? ms : null;
  }
  // The window a search covers, [start, end] in ms.
  function window_() {
    if (state.range === "custom" && state.start !== null && state.end !== null)
      return [state.start, state.end];
    const end = Date.now();
    return [end - (RANGES[state.range] || RANGES["1h"]), end];
  }

  // ---- URL state --------------------------------------------------------------------------
  const KEYS = ["q", "service", "host", "level", "trace_id", "pattern_id"];
  function readUrl() {
    const p = new URLSearchParams(location.search);
    for (const k of KEYS) state[k] = p.get(k) || "";
    const r = p.get("range");
    if (r && (RANGES[r] || r === "custom")) state.range = r;
    if (state.range === "custom") {
      state.start = Number(p.get("start")) || null;
      state.end = Number(p.get("end")) || null;
      if (state.start === null || state.end === null) state.range = "1h";
    }
  }
  function urlFor(overrides) {
    const s = Object.assign({}, state, overrides || {});
    const p = new URLSearchParams();
    p.set("range", s.range);
    if (s.range === "custom") {
      p.set("start", String(Math.round(s.start)));
      p.set("end", String(Math.round(s.end)));
    }
    for (const k of KEYS) if (s[k]) p.set(k, s[k]);
    return location.pathname + "?" + p;
  }
  function writeUrl() {
    history.replaceState(null, "", urlFor());
  }

  function filters() {
    const [start, end] = window_();
    return {
      start_time: epoch(start), end_time: epoch(end), q: state.q, service: state.service,
      host: state.host, level: state.level, trace_id: state.trace_id, pattern_id: state.pattern_id,
    };
  }

  // ---- controls ---------------------------------------------------------------------------
  function syncControls() {
    $("search").value = state.q;
    $("range").value = state.range;
    $("custom-range").hidden = state.range !== "custom";
    if (state.range === "custom") {
      $("range-start").value = toLocalInput(state.start);
      $("range-end").value = toLocalInput(state.end);
    }
    renderChips();
  }

  // Filters without a facet (trace, pattern) show as chips that remove them.
  function renderChips() {
    const box = $("filters");
    box.textContent = "";
    for (const k of ["trace_id", "pattern_id"]) {
      if (!state[k]) continue;
      const b = document.createElement("button");
      b.type = "button";
      b.className = "chip";
      b.textContent = `${k}: ${state[k]} ×`;
      b.setAttribute("aria-label", `Remove filter ${k} ${state[k]}`);
      b.addEventListener("click", () => {
        state[k] = "";
        refresh("filter");
      });
      box.appendChild(b);
    }
  }

  function setCustom(start, end) {
    state.range = "custom";
    state.start = Math.min(start, end);
    state.end = Math.max(start, end);
  }

  // ---- results ----------------------------------------------------------------------------
  let generation = 0; // bumps on every new search; stale answers are dropped
  let nextCursor = null;
  let loadingMore = false;
  let rowsShown = 0;
  let trimmed = false;
  const records = new Map(); // data-id -> record, for the detail

  function setStatus(text) {
    $("results-status").textContent = text;
  }
  function countStatus() {
    setStatus(`${rowsShown} rows${nextCursor ? "" : trimmed ? " (older rows trimmed)" : ""}`);
  }

  function makeRow(r, key, live) {
    const tr = document.createElement("tr");
    tr.className = live ? "row live" : "row";
    tr.dataset.id = key;
    tr.tabIndex = -1; // one row at a time is in the tab order (rovingRow); arrows move between
    const cells = [
      ["ts", r.timestamp], ["level", r.level], ["service", r.service], ["host", r.host],
      ["message", r.message],
    ];
    for (const [cls, v] of cells) {
      const td = document.createElement("td");
      td.className = cls === "level" && v ? `level lvl-${v}` : cls;
      td.textContent = v == null ? "" : String(v);
      tr.appendChild(td);
    }
    records.set(key, r);
    return tr;
  }

  function appendRows(rows) {
    const frag = document.createDocumentFragment();
    for (const r of rows) frag.appendChild(makeRow(r, String(r.id), false));
    $("results").tBodies[0].appendChild(frag);
    rowsShown += rows.length;
    ensureRovingRow();
  }

  async function loadPage(gen, first) {
    const params = Object.assign(filters(), { envelope: 1, limit: PAGE });
    if (!first) params.cursor = nextCursor;
    const answer = await get("/query/logs", params);
    if (gen !== generation) return false;
    appendRows(answer.logs);
    nextCursor = answer.next;
    countStatus();
    return true;
  }

  async function loadMore() {
    if (loadingMore || !nextCursor) return;
    loadingMore = true;
    const gen = generation;
    setStatus("loading");
    try {
      await loadPage(gen, false);
    } catch (e) {
      report("more rows", e);
      setStatus(e.message);
    } finally {
      loadingMore = false;
    }
    // The sentinel may still be in view (a tall screen): keep filling.
    if (gen === generation && nextCursor && sentinelVisible()) loadMore();
  }
  function sentinelVisible() {
    const r = $("results-end").getBoundingClientRect();
    return r.top < window.innerHeight + 200;
  }

  async function searchResults(gen, t0) {
    const body = $("results").tBodies[0];
    body.textContent = "";
    records.clear();
    rowsShown = 0;
    nextCursor = null;
    trimmed = false;
    setStatus("loading");
    try {
      if (!(await loadPage(gen, true))) return;
      api.lastSearchMs = Math.round(performance.now() - t0);
      api.ready = true;
      if (nextCursor && sentinelVisible()) loadMore();
    } catch (e) {
      if (gen !== generation) return;
      report("search", e);
      setStatus(e.message);
      api.ready = true; // rendered: an error is what there is to show
    }
  }

  // ---- facets -----------------------------------------------------------------------------
  // The counts depend on the range only (/query/stats takes no filters): kept until it changes.
  let lastStats = null;
  async function loadFacets(gen) {
    const [start, end] = window_();
    try {
      const s = await get("/query/stats", { start_time: epoch(start), end_time: epoch(end), top: 20 });
      if (gen !== generation) return;
      lastStats = s;
      renderFacets();
    } catch (e) {
      report("facets", e);
    }
  }
  function renderFacets() {
    if (!lastStats) return;
    renderFacet("service", lastStats.by_service);
    renderFacet("host", lastStats.by_host);
    renderFacet("level", lastStats.by_level);
  }

  function renderFacet(name, counts) {
    const list = $(`facet-${name}`).querySelector("ul");
    list.textContent = "";
    const entries = Object.entries(counts || {});
    // The selected value stays listed (with 0) even when the range has none of it.
    if (state[name] && !entries.some(([v]) => v === state[name])) entries.push([state[name], 0]);
    for (const [value, count] of entries) {
      const li = document.createElement("li");
      const b = document.createElement("button");
      b.type = "button";
      b.className = "facet";
      b.dataset.value = value;
      b.setAttribute("aria-pressed", String(state[name] === value));
      const label = document.createElement("span");
      label.className = "value";
      label.textContent = value || "(none)";
      const c = document.createElement("span");
      c.className = "count";
      c.textContent = String(count);
      b.append(label, c);
      b.title = `${count} records in the range; click to ${state[name] === value ? "remove" : "add"} the filter`;
      b.addEventListener("click", () => {
        state[name] = state[name] === value ? "" : value;
        refresh("filter");
      });
      li.appendChild(b);
      list.appendChild(li);
    }
    if (!entries.length) {
      const li = document.createElement("li");
      li.className = "hint";
      li.textContent = "none in the range";
      list.appendChild(li);
    }
  }

  // ---- histogram ----------------------------------------------------------------------------
  // One /query/histogram call: the range's records matching the search and the facets, counted
  // per bucket and level by the store.
  let plot = null;

  async function loadHistogram(gen, t0) {
    const f = filters();
    let answer;
    try {
      answer = await get("/query/histogram", Object.assign(f, { buckets: BUCKETS }));
    } catch (e) {
      report("histogram", e);
      return;
    }
    if (gen !== generation) return;
    const step = answer.bucket_seconds * 1000;
    drawHistogram(answer.buckets.map((b) => ({ from: parseTs(b.start), counts: b.counts })), step);
    api.lastHistogramMs = Math.round(performance.now() - t0);
  }

  function drawHistogram(buckets, step) {
    const seen = new Set();
    for (const b of buckets) for (const l of Object.keys(b.counts)) seen.add(l);
    const levels = LEVELS.filter((l) => seen.has(l));
    for (const l of seen) if (!levels.includes(l)) levels.push(l);
    const xs = buckets.map((b) => (b.from + step / 2) / 1000);
    // Stacked: series k holds levels 0..k summed; drawn tallest first so each shows its band.
    const sums = [];
    let acc = xs.map(() => 0);
    for (const l of levels) {
      acc = acc.map((v, i) => v + (buckets[i].counts[l] || 0));
      sums.push(acc);
    }
    const totals = {};
    for (const l of levels) totals[l] = buckets.reduce((n, b) => n + (b.counts[l] || 0), 0);
    renderLegend(levels, totals);
    const el = $("histogram");
    const width = Math.max(280, el.clientWidth || 600);
    const series = [{}];
    const data = [xs];
    for (let k = levels.length - 1; k >= 0; k--) {
      const color = COLORS[levels[k]] || COLORS.other;
      series.push({
        label: levels[k], fill: color, stroke: color, width: 0,
        paths: window.uPlot.paths.bars({ size: [0.9, 100] }), points: { show: false },
      });
      data.push(sums[k]);
    }
    if (!levels.length) {
      series.push({ label: "records", paths: window.uPlot.paths.bars({ size: [0.9, 100] }), points: { show: false } });
      data.push(xs.map(() => 0));
    }
    if (plot) plot.destroy();
    plot = new window.uPlot({
      width, height: 180, series, legend: { show: false },
      scales: { x: { time: true, range: () => [xs[0] - step / 2000, xs[xs.length - 1] + step / 2000] } },
      cursor: { drag: { x: true, y: false, setScale: false }, points: { show: false } },
      axes: [{}, { size: 50 }],
      hooks: {
        setSelect: [(u) => {
          if (u.select.width < 3) return;
          const from = u.posToVal(u.select.left, "x") * 1000;
          const to = u.posToVal(u.select.left + u.select.width, "x") * 1000;
          u.setSelect({ left: 0, width: 0, top: 0, height: 0 }, false);
          setCustom(from, to);
          refresh();
        }],
      },
    }, data, el);
  }

  function renderLegend(levels, totals) {
    const ul = $("histogram-legend");
    ul.textContent = "";
    for (const l of levels) {
      const li = document.createElement("li");
      const sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.background = COLORS[l] || COLORS.other;
      li.append(sw, `${l || "(no level)"} ${totals[l]}`);
      ul.appendChild(li);
    }
  }

  window.addEventListener("resize", () => {
    if (plot) plot.setSize({ width: Math.max(280, $("histogram").clientWidth), height: 180 });
  });

  // ---- patterns ---------------------------------------------------------------------------
  async function loadPatterns(gen) {
    const [start, end] = window_();
    const params = {
      start_time: epoch(start), end_time: epoch(end), service: state.service, host: state.host,
      level: state.level, new: $("patterns-new").checked ? 1 : "", limit: 20,
    };
    const list = $("patterns-list");
    $("patterns-status").textContent = "loading";
    try {
      const answer = await get("/query/patterns", params);
      if (gen !== generation) return;
      list.textContent = "";
      $("patterns-status").textContent = answer.patterns.length
        ? `${answer.patterns.length} patterns` : "no patterns in the range";
      for (const p of answer.patterns) list.appendChild(patternItem(p, start, end));
      sparklines(gen, answer.patterns, start, end);
    } catch (e) {
      report("patterns", e);
      $("patterns-status").textContent = e.message;
    }
  }

  function patternItem(p, start, end) {
    const li = document.createElement("li");
    li.className = "pattern";
    li.dataset.patternId = p.id;
    const count = document.createElement("span");
    count.className = "count";
    count.textContent = String(p.count);
    const svg = document.createElementNS("http://www.w3.org/2000/svg", "svg");
    svg.setAttribute("viewBox", "0 0 100 20");
    svg.setAttribute("preserveAspectRatio", "none");
    svg.setAttribute("role", "img");
    svg.setAttribute("aria-label", `records per minute of pattern ${p.id}`);
    // span.template holds exactly the template's text (a button inside: it filters by the pattern).
    const tpl = document.createElement("button");
    tpl.type = "button";
    tpl.className = "template-link";
    tpl.title = `show the records of pattern ${p.id} (${p.service})`;
    tpl.textContent = p.template == null ? `(pattern ${p.id})` : p.template;
    tpl.addEventListener("click", () => {
      state.pattern_id = p.id;
      refresh("filter");
    });
    const tplSpan = document.createElement("span");
    tplSpan.className = "template";
    tplSpan.appendChild(tpl);
    const text = document.createElement("span");
    text.className = "pattern-text";
    const firstSeen = parseTs(p.first_seen);
    if (firstSeen >= start && firstSeen <= end) {
      const n = document.createElement("span");
      n.className = "new";
      n.textContent = "NEW";
      text.appendChild(n);
    }
    text.appendChild(tplSpan);
    li.append(count, svg, text);
    return li;
  }

  async function sparklines(gen, patterns, start, end) {
    let next = 0;
    const worker = async () => {
      while (next < patterns.length && gen === generation) {
        const p = patterns[next++];
        const m = await get(`/query/patterns/${p.id}`, { start_time: epoch(start), end_time: epoch(end) });
        if (gen !== generation) return;
        const li = document.querySelector(`li.pattern[data-pattern-id="${p.id}"]`);
        if (li) drawSparkline(li.querySelector("svg"), m.minutes, start, end);
      }
    };
    try {
      await worker();
    } catch (e) {
      report("sparklines", e);
    }
  }

  function drawSparkline(svg, minutes, start, end) {
    const n = 40;
    const bins = new Array(n).fill(0);
    const span = Math.max(1, end - start);
    for (const m of minutes) {
      const i = Math.min(n - 1, Math.max(0, Math.floor(((parseTs(m.minute) - start) / span) * n)));
      bins[i] += m.count;
    }
    const max = Math.max(1, ...bins);
    const d = bins.map((v, i) => `${i ? "L" : "M"}${((i / (n - 1)) * 100).toFixed(1)},${(19 - (v / max) * 18).toFixed(1)}`).join("");
    const path = document.createElementNS("http://www.w3.org/2000/svg", "path");
    path.setAttribute("d", d);
    svg.textContent = "";
    svg.appendChild(path);
  }

  // ---- context pack -----------------------------------------------------------------------
  async function loadContext() {
    const [start, end] = window_();
    $("context-status").textContent = "loading";
    try {
      const text = await get("/query/context", {
        start_time: epoch(start), end_time: epoch(Math.min(end, Date.now())), service: state.service,
        host: state.host, format: "text",
      }, { text: true });
      $("context-text").textContent = text;
      $("context-copy").disabled = false;
      $("context-status").textContent = `${text.length} characters`;
    } catch (e) {
      report("context", e);
      $("context-status").textContent = e.message;
    }
  }

  async function copyContext() {
    const text = $("context-text").textContent;
    try {
      await navigator.clipboard.writeText(text);
    } catch (_) {
      // No clipboard API (plain http on another host): select it for Ctrl+C.
      const range = document.createRange();
      range.selectNodeContents($("context-text"));
      const sel = getSelection();
      sel.removeAllRanges();
      sel.addRange(range);
      document.execCommand && document.execCommand("copy");
    }
    $("context-status").textContent = "copied";
  }

  // ---- row detail -------------------------------------------------------------------------
  const COLUMNS = ["id", "timestamp", "source", "service", "host", "level", "trace_id", "span_id",
    "event_type", "error_code", "message", "pattern_id"];

  function openDetail(key, opener) {
    const r = records.get(key);
    if (!r) return;
    const dl = $("detail-fields");
    dl.textContent = "";
    for (const c of COLUMNS) {
      if (!(c in r)) continue;
      const dt = document.createElement("dt");
      dt.textContent = c;
      const dd = document.createElement("dd");
      dd.textContent = r[c] == null ? "—" : String(r[c]);
      dl.append(dt, dd);
    }
    $("detail-meta").textContent = r.meta_json == null ? "null" : JSON.stringify(r.meta_json, null, 2);
    const links = $("detail-links");
    links.textContent = "";
    const ts = parseTs(r.timestamp);
    if (r.trace_id) {
      // A trace spans seconds: an hour either side of this record finds the rest of it.
      const a = document.createElement("a");
      a.id = "detail-trace";
      a.textContent = "Same trace";
      a.href = urlFor({ range: "custom", start: ts - 3600e3, end: ts + 3600e3, trace_id: r.trace_id,
        q: "", service: "", host: "", level: "", pattern_id: "" });
      links.appendChild(a);
    }
    if (r.pattern_id) {
      const a = document.createElement("a");
      a.id = "detail-pattern";
      a.textContent = "Same pattern";
      a.href = urlFor({ pattern_id: r.pattern_id, q: "", trace_id: "" });
      links.appendChild(a);
    }
    const dialog = $("detail");
    dialog.returnFocusTo = opener;
    dialog.showModal();
    $("detail-close").focus();
  }

  $("detail-close").addEventListener("click", () => $("detail").close());
  $("detail").addEventListener("close", () => {
    const back = $("detail").returnFocusTo;
    if (back && back.isConnected) back.focus();
  });

  // Tab reaches the table once, on the row last visited (else the first), not on every row.
  function rovingRow(tr) {
    const body = $("results").tBodies[0];
    for (const r of body.querySelectorAll('tr.row[tabindex="0"]')) if (r !== tr) r.tabIndex = -1;
    if (tr) tr.tabIndex = 0;
  }
  function ensureRovingRow() {
    const body = $("results").tBodies[0];
    if (!body.querySelector('tr.row[tabindex="0"]')) rovingRow(body.firstElementChild);
  }

  const tbody = $("results").tBodies[0];
  tbody.addEventListener("focusin", (ev) => {
    const tr = ev.target.closest("tr.row");
    if (tr) rovingRow(tr);
  });
  tbody.addEventListener("click", (ev) => {
    const tr = ev.target.closest("tr.row");
    if (tr) openDetail(tr.dataset.id, tr);
  });
  tbody.addEventListener("keydown", (ev) => {
    const tr = ev.target.closest("tr.row");
    if (!tr) return;
    if (ev.key === "Enter" || ev.key === " ") {
      ev.preventDefault();
      openDetail(tr.dataset.id, tr);
    } else if (ev.key === "ArrowDown" || ev.key === "ArrowUp") {
      ev.preventDefault();
      const to = ev.key === "ArrowDown" ? tr.nextElementSibling : tr.previousElementSibling;
      if (to) {
        rovingRow(to);
        to.focus();
      }
    }
  });

  // ---- live tail --------------------------------------------------------------------------
  let source = null;
  let pending = [];
  let dropped = 0;
  let flushScheduled = false;

  function tailUrl() {
    const p = new URLSearchParams();
    for (const k of ["service", "host", "level", "q"]) if (state[k]) p.set(k, state[k]);
    if (token && !COOKIE_SAFE.test(token)) p.set("token", token);
    return "/tail" + (p.toString() ? "?" + p : "");
  }

  // Paused while the user reads further down: rows arriving then would shift what they read.
  function paused() {
    return $("results").getBoundingClientRect().top < -20;
  }

  function startTail() {
    stopTail();
    source = new EventSource(tailUrl());
    source.onmessage = (ev) => {
      let r;
      try {
        r = JSON.parse(ev.data);
      } catch (e) {
        report("tail", e);
        return;
      }
      pending.push([ev.lastEventId, r]);
      if (pending.length > MAX_ROWS) {
        dropped += pending.length - MAX_ROWS;
        pending.splice(0, pending.length - MAX_ROWS);
      }
      schedule();
    };
    source.addEventListener("gap", (ev) => {
      const g = JSON.parse(ev.data);
      tailNote(`gap: ${g.missed == null ? "some" : g.missed} records missed (${g.reason})`);
    });
    source.onopen = () => tailNote("live");
    // EventSource reconnects by itself (resuming with Last-Event-ID); say so meanwhile.
    source.onerror = () => tailNote("reconnecting");
  }

  function stopTail() {
    if (source) source.close();
    source = null;
    pending = [];
    $("tail-status").hidden = true;
  }

  function tailNote(text) {
    const el = $("tail-status");
    el.hidden = false;
    el.textContent = `Live tail: ${text}`;
  }

  // At most one DOM update per FLUSH_MS, in an animation frame: at 1000 records/s that is a
  // couple of hundred rows at a time, not a layout per record.
  const FLUSH_MS = 200;
  let lastFlush = 0;
  function schedule() {
    if (flushScheduled) return;
    flushScheduled = true;
    const wait = Math.max(0, lastFlush + FLUSH_MS - performance.now());
    setTimeout(() => requestAnimationFrame(flush), wait);
  }

  function flush() {
    flushScheduled = false;
    lastFlush = performance.now();
    if (!source || !pending.length) return;
    if (paused()) {
      tailNote(`paused while you scroll (${pending.length} new)`);
      return; // the scroll listener resumes
    }
    const frag = document.createDocumentFragment();
    for (let i = pending.length - 1; i >= 0; i--) {
      const [eid, r] = pending[i];
      frag.appendChild(makeRow(r, `tail-${eid}`, true));
    }
    const body = $("results").tBodies[0];
    body.insertBefore(frag, body.firstChild);
    rowsShown += pending.length;
    pending = [];
    const excess = body.rows.length - MAX_ROWS;
    if (excess > 0) {
      // One range deletion, not one per row.
      const range = document.createRange();
      range.setStartBefore(body.rows[MAX_ROWS]);
      range.setEndAfter(body.lastElementChild);
      for (let i = MAX_ROWS; i < body.rows.length; i++) records.delete(body.rows[i].dataset.id);
      range.deleteContents();
      rowsShown -= excess;
      trimmed = true;
      nextCursor = null; // the table no longer ends where the cursor points
    }
    ensureRovingRow();
    tailNote(dropped ? `live (${dropped} records skipped while the page fell behind)` : "live");
    countStatus();
  }

  window.addEventListener("scroll", () => {
    if (source && pending.length && !paused()) schedule();
  }, { passive: true });

  $("tail-toggle").addEventListener("click", () => {
    const on = $("tail-toggle").getAttribute("aria-pressed") !== "true";
    $("tail-toggle").setAttribute("aria-pressed", String(on));
    if (on) startTail();
    else stopTail();
  });

  // ---- wiring -----------------------------------------------------------------------------
  // scope: "all" (the range changed: everything), "filter" (a facet, trace or pattern: not the
  // facet counts, which depend on the range only), "search" (q: neither those nor the patterns).
  // The rows go first and the rest after them, so a busy store answers the search first.
  function refresh(scope = "all") {
    const t0 = performance.now();
    const gen = ++generation;
    writeUrl();
    syncControls();
    if (scope !== "all") renderFacets();
    searchResults(gen, t0).then(() => {
      if (gen !== generation) return;
      loadHistogram(gen, t0);
      if (scope === "all") loadFacets(gen);
      if (scope !== "search") loadPatterns(gen);
    });
    if (source) startTail(); // the tail follows the filters
  }

  $("search-form").addEventListener("submit", (ev) => {
    ev.preventDefault();
    state.q = $("search").value.trim();
    refresh("search");
  });
  $("range").addEventListener("change", () => {
    const v = $("range").value;
    if (v === "custom") {
      const [start, end] = window_();
      setCustom(start, end);
    } else {
      state.range = v;
    }
    refresh();
  });
  const customChanged = () => {
    const start = fromLocalInput($("range-start").value);
    const end = fromLocalInput($("range-end").value);
    if (start === null || end === null) return;
    setCustom(start, end);
    refresh();
  };
  $("range-start").addEventListener("change", customChanged);
  $("range-end").addEventListener("change", customChanged);
  $("patterns-new").addEventListener("change", () => loadPatterns(generation));
  $("context-load").addEventListener("click", loadContext);
  $("context-copy").addEventListener("click", copyContext);

  const observer = new IntersectionObserver((entries) => {
    if (entries.some((e) => e.isIntersecting)) loadMore();
  }, { rootMargin: "200px" });
  observer.observe($("results-end"));

  window.addEventListener("error", (ev) => report("page", ev.message));
  window.addEventListener("unhandledrejection", (ev) => report("page", ev.reason));

  readUrl();
  refresh();
})();
