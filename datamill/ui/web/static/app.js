// datamill ui: a small page over the JSON API (docs/ui.md). It polls; it never writes.
"use strict";

// every second while a run is going, every five otherwise (?poll=MS sets both)
const POLL_PARAM = Number(new URLSearchParams(location.search).get("poll")) || null;
const POLL_MS = POLL_PARAM || 1000;
const IDLE_POLL_MS = POLL_PARAM || 5000;
const PLOT_MS = 3000;
const PAGE = 50;
const SHORT = 240;

const view = { pipeline: null, overview: null, step: null, offset: 0, shown: undefined, query: "", nextRow: null, found: [] };
const $ = (id) => document.getElementById(id);

async function api(path) {
  const reply = await fetch(path, { cache: "no-store" });
  const body = await reply.json();
  if (!reply.ok) throw new Error(body.error || reply.statusText);
  return body;
}

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (value === undefined || value === null) continue;
    if (key === "class") node.className = value;
    else if (key.startsWith("data")) node.setAttribute(key.replace(/[A-Z]/g, (c) => "-" + c.toLowerCase()), value);
    else node[key] = value;
  }
  for (const child of children.flat()) node.append(child instanceof Node ? child : String(child ?? ""));
  return node;
}

const integer = (n) => (n === null || n === undefined ? "?" : Number(n).toLocaleString("en-US"));
const usd = (n) => (n === null || n === undefined ? "unknown" : "$" + Number(n).toFixed(n >= 1 ? 2 : 4));
function duration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "–";
  if (seconds < 90) return seconds.toFixed(0) + "s";
  if (seconds < 5400) return (seconds / 60).toFixed(1) + "m";
  return (seconds / 3600).toFixed(1) + "h";
}
const age = (seconds) => duration(seconds) + " ago";

// --- long values: the first SHORT characters, a button to see the rest ---------------------
function valueCell(value, cls) {
  const text = typeof value === "string" ? value : JSON.stringify(value);
  const cell = el("td", { class: cls });
  if (text === undefined) return cell;
  if (text.length <= SHORT) {
    cell.textContent = text;
    return cell;
  }
  const shown = el("span", {}, text.slice(0, SHORT) + "…");
  const button = el("button", { type: "button", class: "more" }, "more");
  button.onclick = () => {
    const open = button.textContent === "more";
    shown.textContent = open ? text : text.slice(0, SHORT) + "…";
    button.textContent = open ? "less" : "more";
  };
  cell.append(shown, " ", button);
  return cell;
}

// --- pipelines ------------------------------------------------------------------------------
async function loadPipelines() {
  const data = await api("/api/pipelines");
  $("where").textContent = data.roots.join(", ");
  const list = $("pipelines");
  list.replaceChildren();
  if (!data.pipelines.length) list.append(el("li", { class: "muted" }, "no *.state.db found yet"));
  for (const p of data.pipelines) {
    const link = el("a", { href: "#" + p.id, dataPipeline: p.id, title: p.path }, `${p.prefix}`, el("br"), el("span", { class: "muted" }, p.shown));
    list.append(el("li", {}, link));
  }
  const wanted = location.hash.slice(1);
  const chosen = data.pipelines.find((p) => p.id === wanted) || data.pipelines[0];
  if (chosen && (!view.pipeline || view.pipeline.id !== chosen.id)) select(chosen);
  markCurrent();
}

function markCurrent() {
  for (const a of document.querySelectorAll("#pipelines a")) a.classList.toggle("current", view.pipeline && a.dataset.pipeline === view.pipeline.id);
}

function select(pipeline) {
  view.pipeline = pipeline;
  view.step = null;
  view.offset = 0;
  view.query = "";
  $("search").value = "";
  $("title").textContent = `${pipeline.prefix} — ${pipeline.path}`;
  $("main").hidden = false;
  markCurrent();
  refresh(true);
  refreshPlot();
}

window.addEventListener("hashchange", loadPipelines);

// --- status, steps, reasons, jobs -----------------------------------------------------------
async function refresh(first = false) {
  if (!view.pipeline) return;
  const pid = view.pipeline.id;
  try {
    const overview = await api(`/api/pipelines/${pid}/overview`);
    if (!view.pipeline || view.pipeline.id !== pid) return;
    view.overview = overview;
    $("error").hidden = true;
    renderRun(overview);
    renderSteps(overview);
    renderJobs(overview.jobs);
    if (first || view.step === null) setupRowStep(overview);
    else if (!view.query && view.shown !== undefined && overview.status.steps[view.step]) {
      const total = overview.status.steps[view.step].rows_out;
      if (total !== view.rowsTotal && view.shown < PAGE) loadRows();  // the last page fills as batches commit
      else if (total !== view.rowsTotal) showRange((view.rowsTotal = total));
      if (overview.status.steps[view.step].rows_failed !== view.failedTotal) loadFailures();
    }
    $("updated").textContent = "updated " + new Date().toLocaleTimeString();
  } catch (error) {
    $("error").textContent = String(error.message || error);
    $("error").hidden = false;
  }
}

function renderRun({ status, details }) {
  const run = status.run;
  const total = status.steps.reduce((sum, s) => sum + (s.cost_usd || 0), 0);
  const thisRun = details.reduce((sum, d) => sum + (d.run_cost_usd || 0), 0);
  const parts = [];
  if (!run) parts.push("no run recorded yet");
  else {
    const end = run.finished_at || Date.now() / 1000;
    parts.push(`run #${run.id} `, el("b", { id: "run-status", dataValue: run.status, class: "state-" + run.status }, run.status), ` (PID ${run.pid}), ${duration(end - run.started_at)}${run.finished_at ? "" : " so far"}`);
  }
  parts.push(" · spend this run ", el("b", { id: "spend-run", dataValue: thisRun }, usd(thisRun)));
  parts.push(" · total ", el("b", { id: "spend-total", dataValue: total }, usd(total)));
  if (status.spend && typeof status.spend === "object") {
    for (const [key, value] of Object.entries(status.spend)) {
      parts.push(` · ${key.replace(/_/g, " ")} `, el("b", { dataSpend: key, dataValue: value }, typeof value === "number" && /usd|cost/.test(key) ? usd(value) : JSON.stringify(value)));
    }
  }
  parts.push(" · ", el("span", { id: "cached", dataValue: status.cached_responses }, integer(status.cached_responses)), " cached responses");
  $("run").replaceChildren(...parts);
}

const STEP_COLUMNS = ["step", "state", "progress", "out", "rows/s", "ETA", "failed", "dropped", "tokens", "spend this run", "spend total"];
// per-step spend fields beyond cost_usd (added by newer datamill versions) get their own columns
const extraSpendKeys = (steps) => [...new Set(steps.flatMap((s) => Object.keys(s)))].filter((k) => /spend|cost/.test(k) && k !== "cost_usd");

function renderSteps({ status, details }) {
  const extra = extraSpendKeys(status.steps);
  const head = el("tr", {}, [...STEP_COLUMNS, ...extra.map((k) => k.replace(/_/g, " "))].map((c) => el("th", {}, c)));
  const running = status.run && status.run.status === "running";
  const finished = (state) => state === "complete" || state === "failed rows";
  const current = running ? status.steps.find((s) => !finished(s.state)) : null;
  const body = status.steps.map((s) => {
    const d = details[s.index] || {};
    const state = s === current ? "running" : s.state;
    const fraction = s.rows_total ? Math.min(1, s.rows_done / s.rows_total) : finished(s.state) ? 1 : 0;
    const eta = state === "running" && s.rows_total !== null && s.rows_per_second > 0 ? (s.rows_total - s.rows_done) / s.rows_per_second : null;
    const num = (field, value, text, bad = false) => el("td", { class: "num" + (bad ? " bad" : ""), dataField: field, dataValue: value ?? "" }, text);
    return el("tr", { dataStep: s.index },
      el("td", { class: "name" }, `${s.index} ${s.name}`, el("br"), el("span", { class: "muted file" }, (d.model ? d.model + " · " : "") + s.file)),
      el("td", { class: "state-" + state, dataField: "state", dataValue: s.state }, state),
      el("td", { class: "num" }, el("span", { class: "bar" }, el("span", { style: `width:${(fraction * 100).toFixed(1)}%` })),
        el("span", { dataField: "rows_done", dataValue: s.rows_done }, integer(s.rows_done)), " / ",
        el("span", { dataField: "rows_total", dataValue: s.rows_total ?? "" }, integer(s.rows_total))),
      num("rows_out", s.rows_out, integer(s.rows_out)),
      num("rows_per_second", s.rows_per_second, s.rows_per_second === null ? "–" : s.rows_per_second.toFixed(1)),
      num("eta", eta, finished(state) ? "done" : duration(eta)),
      num("rows_failed", s.rows_failed, integer(s.rows_failed), s.rows_failed > 0),
      num("rows_dropped", s.rows_dropped, integer(s.rows_dropped)),
      num("tokens", s.prompt_tokens + s.completion_tokens, integer(s.prompt_tokens + s.completion_tokens)),
      num("run_cost_usd", d.run_cost_usd, usd(d.run_cost_usd)),
      num("cost_usd", s.cost_usd, usd(s.cost_usd)),
      ...extra.map((k) => num(k, s[k], typeof s[k] === "number" ? usd(s[k]) : JSON.stringify(s[k] ?? null))),
    );
  });
  $("steps").replaceChildren(el("thead", {}, head), el("tbody", {}, body));

  const reasons = [];
  for (const d of details) {
    const failed = Object.entries(d.failed_by_reason || {});
    const dropped = Object.entries(d.dropped_by_reason || {});
    if (!failed.length && !dropped.length) continue;
    const line = el("p", { dataReasons: d.index }, el("b", {}, `step ${d.index}: `));
    if (failed.length) line.append("failed — ", failed.map(([r, n]) => `${r} ×${integer(n)}`).join("; "), dropped.length ? " · " : "");
    if (dropped.length) line.append("dropped — ", dropped.map(([r, n]) => `${r} ×${integer(n)}`).join("; "));
    reasons.push(line);
  }
  $("reasons").replaceChildren(...reasons);
}

function renderJobs(jobs) {
  $("jobs-section").hidden = !jobs.length;
  if (!jobs.length) return;
  const columns = ["step", "provider", "model", "job_id", "state", "status", "n_requests", "completed", "failed", "age"];
  const head = el("tr", {}, columns.map((c) => el("th", {}, c.replace("n_requests", "requests"))));
  const body = jobs.map((job) => el("tr", { dataJob: job.job_id || job.chunk_id }, columns.map((c) =>
    c === "age" ? el("td", { class: "num", dataValue: job.age_seconds }, age(job.age_seconds))
      : el("td", { class: typeof job[c] === "number" ? "num" : "" }, job[c] ?? "–"))));
  $("jobs").replaceChildren(el("thead", {}, head), el("tbody", {}, body));
}

function refreshPlot() {
  if (view.pipeline) $("plot").src = `/api/pipelines/${view.pipeline.id}/plot.svg?t=${Date.now()}`;
}

// --- rows -----------------------------------------------------------------------------------
function setupRowStep({ status }) {
  const select = $("row-step");
  select.replaceChildren(...status.steps.map((s) => el("option", { value: s.index }, `${s.index} ${s.name} (${s.file})`)));
  if (!status.steps.length) return;
  const withRows = status.steps.filter((s) => s.rows_out > 0);
  view.step = (withRows.length ? withRows[withRows.length - 1] : status.steps[status.steps.length - 1]).index;
  select.value = view.step;
  loadRows();
  loadFailures();
}

function columnsFor(rows) {
  const d = (view.overview && view.overview.details[view.step]) || {};
  const inputs = d.input_columns || [];
  const outputs = d.output_columns || [];
  const seen = [...new Set(rows.flatMap((r) => Object.keys(r.values)))];
  const rest = seen.filter((c) => !inputs.includes(c) && !outputs.includes(c));
  return [...inputs.map((c) => [c, "in"]), ...outputs.map((c) => [c, "out"]), ...rest.map((c) => [c, ""])];
}

function renderRows(rows, append = false) {
  const columns = columnsFor(rows);
  const head = el("tr", {}, el("th", {}, "#"), columns.map(([c, side]) => el("th", { class: side, title: side === "in" ? "input column" : side === "out" ? "output column" : "" }, (side ? side + ": " : "") + c)));
  const body = rows.map((r) => el("tr", { dataRow: r.row }, el("td", { class: "num rownum" }, r.row), columns.map(([c, side]) => valueCell(r.values[c], side))));
  if (!append) $("rows").replaceChildren(el("thead", {}, head), el("tbody", {}, body));
  else $("rows").querySelector("tbody").append(...body);
}

async function loadRows() {
  if (view.step === null || !view.pipeline) return;
  const base = `/api/pipelines/${view.pipeline.id}/steps/${view.step}/rows`;
  view.shown = undefined;  // polls leave the table alone until this page is in
  try {
    if (view.query) {
      const data = await api(`${base}?q=${encodeURIComponent(view.query)}&start=0&limit=${PAGE}`);
      view.found = data.rows;
      view.nextRow = data.next_row;
      renderRows(data.rows);
      showSearchState(data);
    } else {
      const data = await api(`${base}?offset=${view.offset}&limit=${PAGE}`);
      renderRows(data.rows);
      view.shown = data.rows.length;
      view.rowsTotal = data.total;
      showRange(data.total);
      $("more-results").hidden = true;
    }
  } catch (error) {
    $("rows").replaceChildren(el("tr", {}, el("td", { class: "error" }, String(error.message || error))));
  }
}

// the page of rows stays put while a run commits more; the count and ▶ follow the run
function showRange(total) {
  const last = view.offset + view.shown;
  $("row-range").textContent = total ? `rows ${integer(view.offset)}–${integer(last - 1)} of ${integer(total)} committed` : "no committed rows yet";
  $("prev").disabled = view.offset === 0;
  $("next").disabled = last >= total;
}

function showSearchState(data) {
  const more = data.next_row !== null;
  $("row-range").textContent = `${integer(view.found.length)} match(es) for “${view.query}”` + (more ? `, searched up to row ${integer(data.next_row)} of ${integer(data.total)}` : ` in ${integer(data.total)} committed rows`);
  $("prev").disabled = $("next").disabled = true;
  $("more-results").hidden = !more;
}

async function moreResults() {
  const base = `/api/pipelines/${view.pipeline.id}/steps/${view.step}/rows`;
  const data = await api(`${base}?q=${encodeURIComponent(view.query)}&start=${view.nextRow}&limit=${PAGE}`);
  view.found.push(...data.rows);
  view.nextRow = data.next_row;
  renderRows(view.found);
  showSearchState(data);
}

async function loadFailures() {
  if (view.step === null || !view.pipeline) return;
  const data = await api(`/api/pipelines/${view.pipeline.id}/steps/${view.step}/failures?limit=${PAGE}`);
  view.failedTotal = data.total;
  $("failed-count").textContent = `step ${view.step}: ${integer(data.total)}` + (data.total > data.failures.length ? `, first ${data.failures.length} shown` : "");
  if (!data.failures.length) {
    $("failures").replaceChildren(el("tr", {}, el("td", { class: "muted" }, "none")));
    return;
  }
  const head = el("tr", {}, ["input row", "reason", "error", "input"].map((c) => el("th", {}, c)));
  const body = data.failures.map((f) => el("tr", { dataFailure: f.input_row }, el("td", { class: "num" }, f.input_row), el("td", {}, f.reason), valueCell(f.error, ""), valueCell(f.input ?? "(the source file's row)", "")));
  $("failures").replaceChildren(el("thead", {}, head), el("tbody", {}, body));
}

$("row-step").onchange = () => { view.step = Number($("row-step").value); view.offset = 0; loadRows(); loadFailures(); };
$("row-form").onsubmit = (event) => { event.preventDefault(); view.query = $("search").value.trim(); view.offset = 0; loadRows(); };
$("clear").onclick = () => { $("search").value = ""; view.query = ""; loadRows(); };
$("prev").onclick = () => { view.offset = Math.max(0, view.offset - PAGE); loadRows(); };
$("next").onclick = () => { view.offset += PAGE; loadRows(); };
$("goto").onchange = () => { view.query = ""; view.offset = Math.max(0, Number($("goto").value) || 0); loadRows(); };
$("more-results").onclick = moreResults;

// --- polling --------------------------------------------------------------------------------
async function poll() {
  try { await refresh(); } finally {
    const running = view.overview && view.overview.status.run && view.overview.status.run.status === "running";
    setTimeout(poll, running ? POLL_MS : IDLE_POLL_MS);
  }
}
setInterval(refreshPlot, PLOT_MS);
setInterval(() => loadPipelines().catch(() => {}), 15000);
loadPipelines().then(() => setTimeout(poll, POLL_MS), (error) => { $("pipelines").replaceChildren(el("li", { class: "error" }, String(error))); });
