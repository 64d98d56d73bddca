/* Tallystick dashboard: every number on these pages comes from the HTTP API (/v1/...).
 *
 * The server renders each page's controls from the URL; this script keeps the URL in step with
 * the controls (so a view can be shared and reloaded), asks the API for the data, and draws the
 * charts (plotly.js, served locally) and the tables beneath them. No framework, no build step.
 */
"use strict";

(() => {
  const $ = (selector, root = document) => root.querySelector(selector);
  const $$ = (selector, root = document) => Array.from(root.querySelectorAll(selector));
  const page = document.body.dataset.page;
  const TODAY = document.body.dataset.today; // the server's UTC date
  const form = $("#controls");
  // Analyses leave bots out; `?include_bots=true` in a page's URL counts them in its queries.
  const INCLUDE_BOTS = new URLSearchParams(window.location.search).get("include_bots") === "true";
  const DAY_MS = 86400000;
  const COLORS = ["#1f4e79", "#d9730d", "#2e8540", "#9b2c9b", "#b42318", "#4f8fc0", "#8a6d00",
    "#5b6775", "#0f766e", "#c2410c"];

  // -- formatting ------------------------------------------------------------------------------

  const intFormat = new Intl.NumberFormat("en", { maximumFractionDigits: 0 });
  const numFormat = new Intl.NumberFormat("en", { maximumFractionDigits: 2 });
  const pctFormat = new Intl.NumberFormat("en", { style: "percent", maximumFractionDigits: 1 });
  const fmtInt = (v) => (v === null || v === undefined ? "—" : intFormat.format(v));
  const fmtNum = (v) => (v === null || v === undefined ? "—"
    : Number.isInteger(v) ? intFormat.format(v) : numFormat.format(v));
  const fmtPct = (v) => (v === null || v === undefined ? "—" : pctFormat.format(v));
  function fmtSeconds(s) {
    if (s === null || s === undefined) return "—";
    if (s < 60) return `${numFormat.format(s)} s`;
    if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
    if (s < 86400) return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
    return `${numFormat.format(s / 86400)} days`;
  }
  function fmtTime(iso) {
    if (!iso) return "—";
    const d = new Date(iso);
    return `${d.toISOString().slice(0, 10)} ${d.toISOString().slice(11, 16)} UTC`;
  }
  function fmtAgo(iso) {
    if (!iso) return "";
    const s = Math.max(0, (Date.now() - new Date(iso).getTime()) / 1000);
    if (s < 90) return "just now";
    if (s < 5400) return `${Math.round(s / 60)} min ago`;
    if (s < 129600) return `${Math.round(s / 3600)} h ago`;
    return `${Math.round(s / 86400)} days ago`;
  }
  const isoDay = (ms) => new Date(ms).toISOString().slice(0, 10);
  const dayMs = (iso) => Date.parse(`${iso}T00:00:00Z`);

  // -- small DOM helpers -----------------------------------------------------------------------

  function el(tag, attrs = {}, ...children) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs)) {
      if (v === null || v === undefined || v === false) continue;
      if (k === "class") node.className = v;
      else if (k === "text") node.textContent = v;
      else if (k === "dataset") Object.assign(node.dataset, v);
      else node.setAttribute(k, v === true ? "" : String(v));
    }
    for (const child of children.flat()) {
      if (child === null || child === undefined || child === false) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  function message(kind, title, detail) {
    return el("div", { class: `message ${kind}`, role: kind === "error" ? "alert" : null },
      el("strong", { text: title }), detail ? ` ${detail}` : "");
  }

  function setStatus(node) {
    const status = $("#status");
    status.replaceChildren(...(node ? [node] : []));
  }

  // -- the HTTP API ----------------------------------------------------------------------------

  class ApiError extends Error {
    constructor(status, code, text) {
      super(text);
      this.status = status;
      this.code = code;
    }
  }

  /** The session ended (expired, signed out elsewhere, its key revoked): sign in again, then come
   * back to this view. */
  function signInAgain() {
    const here = window.location.pathname + window.location.search;
    window.location.assign(`/signin?next=${encodeURIComponent(here)}`);
  }

  /** GET an API path with parameters (an array of [key, value] pairs or an object). */
  async function api(path, params = []) {
    const url = new URL(path, window.location.origin);
    const pairs = Array.isArray(params) ? [...params] : Object.entries(params);
    if (INCLUDE_BOTS && /^\/v1\/(query|metrics)\//.test(path)) pairs.push(["include_bots", "true"]);
    for (const [k, v] of pairs) {
      if (Array.isArray(v)) v.forEach((item) => url.searchParams.append(k, item));
      else if (v !== null && v !== undefined && v !== "") url.searchParams.append(k, v);
    }
    const headers = { Accept: "application/json" };
    let response;
    try {
      response = await fetch(url, { headers });
    } catch (error) {
      throw new ApiError(0, "unreachable",
        "The server did not answer. Is `tally serve` still running?");
    }
    let body = null;
    try {
      body = await response.json();
    } catch (error) {
      body = null;
    }
    const problem = (body && body.error) || {};
    if (response.status === 401) {
      // the dashboard's calls carry the session cookie: without a valid one, sign in
      signInAgain();
      throw new ApiError(401, "unauthorized", "This view needs a read key.");
    }
    if (!response.ok) {
      throw new ApiError(response.status, problem.code || "error",
        problem.message || `The server answered ${response.status}.`);
    }
    return body;
  }

  let metaPromise = null;
  let catalogPromise = null;
  const meta = () => (metaPromise ||= api("/v1/meta").catch((e) => { metaPromise = null; throw e; }));
  const catalog = () => (catalogPromise ||= api("/v1/catalog").catch((e) => {
    catalogPromise = null;
    throw e;
  }));

  // -- view state: the form <-> the URL --------------------------------------------------------

  function formPairs() {
    const pairs = [];
    for (const [k, v] of new FormData(form)) {
      const value = String(v).trim();
      if (value) pairs.push([k, value]);
    }
    const range = pairs.find(([k]) => k === "range");
    if (range && range[1] !== "custom") return pairs.filter(([k]) => k !== "from" && k !== "to");
    return pairs;
  }
  const values = (name) => formPairs().filter(([k]) => k === name).map(([, v]) => v);
  const value = (name, fallback = "") => values(name)[0] || fallback;

  function syncUrl(replace) {
    const pairs = formPairs();
    if (INCLUDE_BOTS) pairs.push(["include_bots", "true"]);
    const query = new URLSearchParams(pairs).toString();
    const next = `${window.location.pathname}${query ? `?${query}` : ""}`;
    const current = `${window.location.pathname}${window.location.search}`;
    if (next === current) return;
    if (replace) window.history.replaceState(null, "", next);
    else window.history.pushState(null, "", next);
  }

  /** The dates to ask for: a quick range counted back from the server's today, or the inputs. */
  async function dateRange() {
    const today = TODAY;
    const range = value("range", "12w");
    const weeks = { "4w": 4, "12w": 12, "26w": 26, "52w": 52 }[range];
    let from = value("from");
    let to = value("to");
    if (weeks) {
      const t = dayMs(today);
      const monday = t - ((new Date(t).getUTCDay() + 6) % 7) * DAY_MS;
      from = isoDay(monday - (weeks - 1) * 7 * DAY_MS);
      to = today;
    } else if (range === "all") {
      const m = await meta();
      from = m.first_day || today;
      to = m.last_day && m.last_day > today ? m.last_day : today;
    } else {
      if (!to) to = today;
      if (!from) from = isoDay(dayMs(to) - 83 * DAY_MS);
    }
    const fromInput = $("#from");
    const toInput = $("#to");
    if (fromInput && range !== "custom") fromInput.value = from;
    if (toInput && range !== "custom") toInput.value = to;
    return { from, to };
  }

  // -- charts and tables -----------------------------------------------------------------------

  /** A card with a title, download buttons, a chart area, a message area and a table area. */
  function chartCard(container, { id, title, subtitle, cls, before }) {
    const head = el("div", { class: "card-head" }, el("h2", { id: `${id}-title`, text: title }),
      el("div", { class: "downloads", role: "group", "aria-label": `Download ${title}` },
        el("button", { type: "button", dataset: { download: "csv" }, "aria-label": `${title}: download the data as CSV` }, "CSV"),
        el("button", { type: "button", dataset: { download: "png" }, "aria-label": `${title}: download the chart as PNG` }, "PNG"),
        el("button", { type: "button", dataset: { download: "svg" }, "aria-label": `${title}: download the chart as SVG` }, "SVG")));
    const chart = el("div", { class: "chart", id, role: "img", "aria-label": `Chart: ${title}` });
    const note = el("div", { class: "card-message" });
    const table = el("div", { class: "table-wrap" });
    const section = el("section", { class: `card ${cls || ""}`, "aria-labelledby": `${id}-title` },
      head, subtitle ? el("p", { class: "card-sub", text: subtitle }) : null, before || null,
      note, chart, table);
    container.append(section);
    const card = { section, chart, note, table, title, rows: [], columns: [] };
    head.addEventListener("click", (event) => {
      const button = event.target.closest("button[data-download]");
      if (button) download(card, button.dataset.download);
    });
    return card;
  }

  function slug(text) {
    return text.toLowerCase().replace(/[^a-z0-9]+/g, "-").replace(/^-|-$/g, "");
  }

  function download(card, format) {
    const name = `${slug(card.title)}-${new Date().toISOString().slice(0, 10)}`;
    if (format === "csv") {
      const cell = (v) => {
        const text = v === null || v === undefined ? "" : Array.isArray(v) ? v.join(";") : String(v);
        return /[",\n]/.test(text) ? `"${text.replace(/"/g, '""')}"` : text;
      };
      const lines = [card.columns.map((c) => cell(c.key)).join(",")];
      for (const row of card.rows) lines.push(card.columns.map((c) => cell(row[c.key])).join(","));
      const blob = new Blob([`${lines.join("\n")}\n`], { type: "text/csv" });
      const link = el("a", { href: URL.createObjectURL(blob), download: `${name}.csv` });
      document.body.append(link);
      link.click();
      link.remove();
      setTimeout(() => URL.revokeObjectURL(link.href), 1000);
      return;
    }
    if (!card.chart.dataset.rendered) return;
    window.Plotly.downloadImage(card.chart, {
      format, filename: name, width: Math.max(card.chart.clientWidth, 640),
      height: Math.max(card.chart.clientHeight, 320),
    });
  }

  const BASE_LAYOUT = {
    margin: { l: 56, r: 16, t: 12, b: 48 },
    font: { family: "system-ui, -apple-system, Segoe UI, Roboto, Arial, sans-serif", size: 12, color: "#1b2430" },
    paper_bgcolor: "#fff", plot_bgcolor: "#fff", colorway: COLORS,
    legend: { orientation: "h", y: -0.18 }, hovermode: "x unified",
    xaxis: { gridcolor: "#eef1f5", automargin: true }, yaxis: { gridcolor: "#eef1f5", automargin: true, rangemode: "tozero" },
  };

  /** Axis settings for counts: whole-number ticks, however small the counts are. */
  function countAxis(max) {
    return max < 8 ? { dtick: 1, tickformat: "d", range: [0, Math.max(max, 1) * 1.1] } : { tickformat: "~s" };
  }

  function merge(base, extra) {
    const out = { ...base };
    for (const [k, v] of Object.entries(extra || {})) {
      out[k] = v && typeof v === "object" && !Array.isArray(v) && base[k] ? { ...base[k], ...v } : v;
    }
    return out;
  }

  /** plotly.js, once its script (loaded after this one) has run. */
  const plotly = new Promise((resolve, reject) => {
    if (window.Plotly) {
      resolve(window.Plotly);
      return;
    }
    const script = $("script[data-plotly]");
    if (!script) {
      reject(new Error("this page loads no charting library"));
      return;
    }
    script.addEventListener("load", () => resolve(window.Plotly));
    script.addEventListener("error", () => reject(new Error("plotly.js did not load")));
  });
  plotly.catch(() => {});

  /** Draw traces on a card and fill its table; `rows` and `columns` are the CSV behind it. */
  async function draw(card, { traces, layout, rows, columns, table }) {
    card.rows = rows;
    card.columns = columns;
    card.note.replaceChildren();
    card.chart.hidden = false;
    // The table first: on a first visit the numbers can show while plotly.js still compiles.
    card.table.replaceChildren(renderTable(table || { columns, rows }, card.title));
    await (await plotly).react(card.chart, traces, merge(BASE_LAYOUT, layout),
      { responsive: true, displayModeBar: false, displaylogo: false });
    card.chart.dataset.rendered = "true";
  }

  function empty(card, title, detail) {
    card.rows = [];
    card.chart.hidden = true;
    delete card.chart.dataset.rendered;
    card.table.replaceChildren();
    card.note.replaceChildren(message("empty", title, detail));
  }

  function failed(card, error) {
    card.chart.hidden = true;
    card.table.replaceChildren();
    card.note.replaceChildren(errorMessage(error));
  }

  function errorMessage(error) {
    if (error instanceof ApiError) {
      const title = error.status === 400 ? "This view cannot be shown:" : "Could not load the data:";
      return message("error", title, error.message);
    }
    console.warn(error);
    return message("error", "Could not draw this view.", "Reload the page; if it persists, see the server's log.");
  }

  /** A table; each column {key, label, format, num}; cells carry data-value with the raw value. */
  function renderTable({ columns, rows, caption }, title) {
    const head = el("tr", {}, columns.map((c) => el("th", { scope: "col", class: c.num ? "num" : null, text: c.label || c.key })));
    const body = rows.map((row) => el("tr", {}, columns.map((c, i) => {
      const raw = row[c.key];
      const text = c.format ? c.format(raw, row) : raw === null || raw === undefined ? "—" : String(raw);
      const attrs = { class: c.num ? "num" : null, dataset: { key: c.key } };
      if (raw !== null && raw !== undefined && typeof raw !== "object") attrs.dataset.value = String(raw);
      return el(i === 0 ? "th" : "td", { ...attrs, scope: i === 0 ? "row" : null }, text);
    })));
    return el("table", {}, el("caption", { text: caption || `The data behind “${title}”` }),
      el("thead", {}, head), el("tbody", {}, body));
  }

  /** Long rows (one per period and group) as one trace per group. */
  function linesByGroup(rows, x, y, group, { name, dash } = {}) {
    const groups = new Map();
    for (const row of rows) {
      const key = group ? String(row[group] ?? "(none)") : (name || y);
      if (!groups.has(key)) groups.set(key, { x: [], y: [] });
      groups.get(key).x.push(row[x]);
      groups.get(key).y.push(row[y]);
    }
    return Array.from(groups, ([key, g]) => ({
      type: "scatter", mode: "lines+markers", name: key, x: g.x, y: g.y,
      line: { width: 2, dash }, marker: { size: 5 },
    }));
  }

  // -- option lists from the API ---------------------------------------------------------------

  function fillSelect(select, options, { blank, keep = true } = {}) {
    if (!select) return;
    // The server's value (from the URL) until the options are filled once; the user's after.
    const selected = select.multiple ? $$("option:checked", select).map((o) => o.value)
      : [select.dataset.filled ? select.value : select.dataset.selected || select.value];
    const have = new Set(options.map((o) => o.value));
    const items = [];
    if (blank !== undefined) items.push(el("option", { value: "" }, blank));
    for (const o of options) items.push(el("option", { value: o.value }, o.label || o.value));
    if (keep && options.length) {
      for (const s of selected) {
        if (s && !have.has(s)) items.push(el("option", { value: s }, `${s} (not in the data)`));
      }
    } else if (keep) {
      for (const s of selected) if (s) items.push(el("option", { value: s }, s));
    }
    select.replaceChildren(...items);
    for (const option of select.options) option.selected = selected.includes(option.value);
    if (!select.multiple && !selected.some((s) => s) && blank === undefined && select.options.length) {
      select.options[0].selected = true;
    }
    select.dataset.filled = "true";
  }

  const eventOptions = (m) => m.events.map((e) => ({ value: e.name, label: `${e.name} (${fmtInt(e.count)})` }));
  const fieldOptions = (m) => [...m.fields, ...m.data_keys].map((f) => ({ value: f }));
  const UNIT_FIELDS = ["user.id", "user.anonymous_id", "session.id", "app.instance"];
  const unitOptions = (m) => UNIT_FIELDS.filter((f) => m.fields.includes(f)).map((f) => ({ value: f }));

  function fillFieldList(m) {
    const list = $("#field-list");
    if (!list) return;
    const examples = [];
    for (const f of [...m.fields, ...m.data_keys]) examples.push(el("option", { value: `${f}=` }));
    list.replaceChildren(...examples);
  }

  /** Rows of repeated inputs (steps, filters) with add and remove buttons. */
  function repeatable(container, addButton, makeRow, min = 0) {
    if (!container) return;
    container.addEventListener("click", (event) => {
      const button = event.target.closest("[data-remove]");
      if (!button) return;
      const rows = $$(".row", container);
      if (rows.length <= min) return;
      const row = button.closest(".row");
      const name = $("select, input", row).name;
      row.remove();
      const focus = $(".row:last-child select, .row:last-child input", container) || addButton;
      focus.focus();
      customised(name);
      applyView(name);
    });
    addButton.addEventListener("click", () => {
      const row = makeRow($$(".row", container).length + 1);
      container.append(row);
      $("select, input", row).focus();
    });
  }

  // -- pages -----------------------------------------------------------------------------------

  const GRAIN_DAYS = { day: 1, week: 7 };
  function periodEnd(start, grain) {
    const t = dayMs(start);
    if (grain === "month") {
      const d = new Date(t);
      return Date.UTC(d.getUTCFullYear(), d.getUTCMonth() + 1, 1);
    }
    return t + (GRAIN_DAYS[grain] || 7) * DAY_MS;
  }
  const periodWord = { day: "day", week: "week", month: "month" };
  function periodLabel(start, grain) {
    if (grain === "month") return new Date(dayMs(start)).toLocaleString("en", { month: "long", year: "numeric", timeZone: "UTC" });
    if (grain === "day") return start;
    return `week of ${start}`;
  }

  /** The latest period that has ended (by `to` and by today), and the one before it. */
  function currentAndPrevious(rows, grain, to, today) {
    const limit = Math.min(dayMs(to) + DAY_MS, dayMs(today));
    const complete = rows.filter((r) => periodEnd(r.period, grain) <= limit);
    const current = complete.length ? complete[complete.length - 1] : rows[rows.length - 1];
    const index = rows.indexOf(current);
    return { current, previous: index > 0 ? rows[index - 1] : null, partial: !complete.length };
  }

  async function kpiCard(container, metric, ctx, cls) {
    // Stickiness (DAU/MAU) is a monthly figure whatever the page's period.
    const grain = metric.analysis === "stickiness" ? "month" : value("grain", "week");
    const valueKey = metric.value;
    const change = el("p", { class: "kpi-change" });
    const figure = el("p", { class: "kpi-value", dataset: { metric: metric.name } }, "…");
    const card = chartCard(container, {
      id: `kpi-${metric.name}`, title: metric.title, cls: `kpi ${cls || ""}`,
      subtitle: metric.description.split(/(?<=\.)\s/)[0], before: el("div", {}, figure, change),
    });
    card.section.dataset.metric = metric.name;
    try {
      const result = await api(`/v1/metrics/${encodeURIComponent(metric.name)}`, { ...ctx.range, grain });
      const rows = result.rows;
      if (!rows.length || rows.every((r) => !r[valueKey])) {
        figure.textContent = "—";
        empty(card, "No data in this range.", "Widen the dates, or check Data health for incoming events.");
        return;
      }
      const { current, previous, partial } = currentAndPrevious(rows, grain, ctx.range.to, TODAY);
      const v = current[valueKey];
      const ratio = metric.value === "share" || metric.value === "ratio" || metric.value === "stickiness";
      figure.textContent = ratio ? fmtPct(v) : fmtNum(v);
      figure.dataset.value = v === null ? "" : String(v);
      figure.dataset.period = current.period;
      let changeText = `${periodLabel(current.period, grain)}${partial ? " (so far)" : ""}`;
      change.className = "kpi-change flat";
      if (previous && previous[valueKey]) {
        const delta = (v - previous[valueKey]) / previous[valueKey];
        const arrow = delta > 0.0005 ? "▲" : delta < -0.0005 ? "▼" : "■";
        // Adoption KPIs grow when things go well; for other metrics (errors, latency) the
        // catalog does not say which way is good, so their change is shown without colour.
        const good = metric.importance === "kpi";
        change.className = `kpi-change ${!good ? "flat" : delta > 0.0005 ? "up" : delta < -0.0005 ? "down" : "flat"}`;
        changeText = `${arrow} ${fmtPct(Math.abs(delta))} vs the ${periodWord[grain]} before · ${changeText}`;
        change.dataset.change = String(delta);
      }
      change.textContent = changeText;
      const done = rows.filter((r) => periodEnd(r.period, grain) <= Math.min(dayMs(ctx.range.to) + DAY_MS, dayMs(TODAY)));
      const open = rows.slice(Math.max(done.length - 1, 0));
      const traces = [{ type: "scatter", mode: "lines+markers", name: metric.title, x: done.map((r) => r.period), y: done.map((r) => r[valueKey]), line: { width: 2.5 }, marker: { size: 5 } }];
      if (open.length > 1) {
        traces.push({ type: "scatter", mode: "lines+markers", name: "so far", x: open.map((r) => r.period), y: open.map((r) => r[valueKey]), line: { width: 2, dash: "dot", color: COLORS[0] }, marker: { size: 5, color: COLORS[0] } });
      }
      const format = ratio ? fmtPct : fmtNum;
      const columns = Object.keys(rows[0]).map((k) => ({ key: k, num: k !== "period", format: k === valueKey ? format : k === "period" ? null : fmtNum }));
      await draw(card, {
        traces,
        layout: { margin: { l: 48, r: 8, t: 6, b: 28 }, showlegend: false, yaxis: { tickformat: ratio ? ".0%" : "~s" } },
        rows, columns,
      });
      const tableWrap = card.table;
      tableWrap.replaceChildren(el("details", {}, el("summary", { text: "Table" }), renderTable({ columns, rows }, metric.title)));
    } catch (error) {
      figure.textContent = "—";
      failed(card, error);
    }
  }

  async function renderKpis(ctx) {
    const cat = await catalog();
    const kpis = cat.metrics.filter((m) => m.used_in.includes("kpis") && m.value);
    const more = cat.metrics.filter((m) => !m.used_in.includes("kpis") && m.importance === "high" && m.value && m.type !== "core");
    const box = $("#kpis");
    const moreBox = $("#more");
    box.replaceChildren();
    moreBox.replaceChildren();
    if (!kpis.length) {
      box.append(message("empty", "No KPIs in the catalog yet.", "Mark a metric with `importance: kpi` in a catalog file (see docs/catalog.md)."));
    }
    $("#more-heading").hidden = !more.length;
    await Promise.all([
      ...kpis.map((m) => kpiCard(box, m, ctx)),
      ...more.map((m) => kpiCard(moreBox, m, ctx, "secondary")),
    ]);
  }

  /** The catalog metrics of one type, as options, and the chosen one (the URL's or the first). */
  async function metricChoice(type, { blank } = {}) {
    const cat = await catalog();
    const metrics = cat.metrics.filter((m) => (Array.isArray(type) ? type.includes(m.type) : m.type === type));
    const select = $("#metric");
    fillSelect(select, metrics.map((m) => ({ value: m.name, label: m.title })), { blank });
    return { metrics, chosen: metrics.find((m) => m.name === select.value) || null };
  }

  async function renderCoreActions(ctx) {
    const charts = $("#charts");
    charts.replaceChildren();
    const { chosen } = await metricChoice("core");
    if (!chosen) {
      charts.append(message("empty", "No core-action metric in the catalog yet.", "Add one with `type: core` (see docs/catalog.md), or use Explore."));
      return;
    }
    syncUrl(true);
    const grain = value("grain", "week");
    const measure = value("measure", "share");
    const card = chartCard(charts, {
      id: "core-chart",
      title: measure === "share" ? `${chosen.title}: % of active users` : `${chosen.title}: users`,
      subtitle: chosen.description,
    });
    try {
      const result = await api(`/v1/metrics/${encodeURIComponent(chosen.name)}`, { ...ctx.range, grain });
      const rows = result.rows;
      if (!rows.length || rows.every((r) => !r.active_users)) {
        empty(card, "No active users in this range.", "Widen the dates, or check Data health.");
        return;
      }
      const traces = linesByGroup(rows, "period", measure === "share" ? "share" : "users", "action");
      if (measure === "users") {
        const periods = [...new Map(rows.map((r) => [r.period, r.active_users]))];
        traces.push({ type: "scatter", mode: "lines", name: "active users", x: periods.map((p) => p[0]), y: periods.map((p) => p[1]), line: { dash: "dash", color: "#5b6775" } });
      }
      // The table: a row per period, a column per action ("users (share)"); the CSV keeps
      // the API's rows as they are.
      const actions = [...new Set(rows.map((r) => r.action))];
      const wide = [...new Map(rows.map((r) => [r.period, { period: r.period, active_users: r.active_users }])).values()];
      for (const r of rows) wide.find((w) => w.period === r.period)[r.action] = r.users;
      const shares = new Map(rows.map((r) => [`${r.period} ${r.action}`, r.share]));
      await draw(card, {
        traces,
        layout: { yaxis: { tickformat: measure === "share" ? ".0%" : "~s", title: { text: measure === "share" ? "share of active users" : "users" } } },
        rows,
        table: {
          rows: wide,
          columns: [
            { key: "period", label: grain },
            { key: "active_users", label: "active users", num: true, format: fmtInt },
            ...actions.map((action) => ({ key: action, num: true, format: (v, w) => `${fmtInt(v)} (${fmtPct(shares.get(`${w.period} ${action}`))})` })),
          ],
          caption: "Users who did each action, and (in brackets) their share of the active users",
        },
        columns: [
          { key: "period", label: grain },
          { key: "action" },
          { key: "users", num: true, format: fmtInt },
          { key: "active_users", label: "active users", num: true, format: fmtInt },
          { key: "share", label: "% of active", num: true, format: fmtPct },
        ],
      });
    } catch (error) {
      failed(card, error);
    }
  }

  function stepRow(index, value = "", options = []) {
    const select = el("select", { name: "step", "aria-label": `Step ${index}`, dataset: { selected: value } });
    fillSelect(select, options, { blank: "Choose an event" });
    select.value = value;
    return el("li", { class: "row" }, select,
      el("button", { type: "button", class: "remove", dataset: { remove: "" }, "aria-label": `Remove step ${index}` }, "×"));
  }

  function filterRow(index, value = "") {
    return el("div", { class: "row" },
      el("input", { type: "text", name: "where", value, "aria-label": `Filter ${index}`, placeholder: "app.environment=prod", list: "field-list", spellcheck: "false" }),
      el("button", { type: "button", class: "remove", dataset: { remove: "" }, "aria-label": `Remove filter ${index}` }, "×"));
  }

  /** Fill a page's controls from a catalog definition's parameters. */
  function applyDefinition(metric, fields) {
    const p = metric.params;
    if (fields.steps && p.steps) {
      const opts = pageMeta ? eventOptions(pageMeta) : [];
      $("#step-rows").replaceChildren(...p.steps.map((s, i) => stepRow(i + 1, s, opts)));
    }
    if (fields.window) form.elements.window.value = p.window || "";
    if (fields.unit && form.elements.unit) {
      const unit = form.elements.unit;
      unit.dataset.selected = p.unit || "user.id";
      delete unit.dataset.filled;
      fillSelect(unit, pageMeta ? unitOptions(pageMeta) : []);
    }
    if (fields.where) {
      const where = Array.isArray(p.where) ? p.where : p.where ? [p.where] : [];
      $("#filter-rows").replaceChildren(...(where.length ? where : [""]).map((w, i) => filterRow(i + 1, w)));
    }
    if (fields.retention) {
      const cohort = form.elements.cohort_event;
      cohort.dataset.selected = p.cohort_event || "";
      delete cohort.dataset.filled;
      fillSelect(cohort, pageMeta ? eventOptions(pageMeta) : []);
      const back = $("#return_events");
      const wanted = Array.isArray(p.return_events) ? p.return_events : [p.return_events];
      for (const o of back.options) o.selected = wanted.includes(o.value);
      const listed = new Set(Array.from(back.options, (o) => o.value));
      for (const w of wanted) if (!listed.has(w)) back.append(el("option", { value: w, selected: true }, w));
      form.elements.periods.value = p.periods || "";
    }
  }

  let pageMeta = null;

  function setupFunnel(m) {
    const opts = eventOptions(m);
    for (const select of $$('select[name="step"]')) fillSelect(select, opts, { blank: "Choose an event" });
    fillSelect($("#unit"), unitOptions(m));
    fillSelect($("#breakdown"), fieldOptions(m), { blank: "None" });
    fillFieldList(m);
  }

  async function renderFunnel(ctx, changed) {
    const charts = $("#charts");
    charts.replaceChildren();
    const { chosen } = await metricChoice("funnel", { blank: "Custom steps" });
    const hasSteps = values("step").length > 0;
    if (chosen && (!hasSteps || changed === "metric")) {
      applyDefinition(chosen, { steps: true, window: true, unit: true, where: true });
    }
    if (!chosen && !hasSteps && changed === undefined) {
      const { metrics } = await metricChoice("funnel", { blank: "Custom steps" });
      if (metrics.length) {
        $("#metric").value = metrics[0].name;
        applyDefinition(metrics[0], { steps: true, window: true, unit: true, where: true });
      }
    }
    syncUrl(true);
    const steps = values("step");
    if (steps.length < 2) {
      charts.append(message("empty", "Choose at least two steps.", "Pick events in the order users go through them."));
      return;
    }
    const breakdown = value("breakdown");
    const card = chartCard(charts, { id: "funnel-chart", title: `Funnel: ${steps.join(" → ")}`, subtitle: `Each ${value("unit", "user.id")} counted once, at the furthest step reached within ${value("window", "1d")} of the first.` });
    try {
      const result = await api("/v1/query/funnel", [
        ["from", ctx.range.from], ["to", ctx.range.to], ...steps.map((s) => ["steps", s]),
        ["window", value("window")], ["unit", value("unit")], ...values("where").map((w) => ["where", w]),
        ["breakdown", breakdown],
      ]);
      const rows = result.rows;
      if (!rows.length || rows.every((r) => !r.users)) {
        empty(card, "Nobody reached the first step in this range.", "Widen the dates or check the steps.");
        return;
      }
      const traces = [];
      const groups = new Map();
      for (const r of rows) {
        const key = breakdown ? String(r.breakdown ?? "(none)") : "all";
        if (!groups.has(key)) groups.set(key, []);
        groups.get(key).push(r);
      }
      for (const [key, g] of groups) {
        traces.push({
          type: "bar", name: key, x: g.map((r) => `${r.step}. ${r.name}`), y: g.map((r) => r.users),
          text: g.map((r) => fmtPct(r.conversion_from_start)), textposition: "auto",
          customdata: g.map((r, i) => [fmtPct(r.conversion_from_previous), i ? fmtInt(g[i - 1].users - r.users) : "—", fmtSeconds(r.median_seconds_from_previous)]),
          hovertemplate: "%{y:,} reached · %{text} of the start<br>%{customdata[0]} of the previous step · %{customdata[1]} dropped<br>median time from previous: %{customdata[2]}<extra>%{fullData.name}</extra>",
        });
      }
      const last = [...groups.values()].map((g) => g[g.length - 1]);
      const overall = el("p", { class: "big", dataset: { value: String(last[0].conversion_from_start) } },
        breakdown ? "" : `${fmtPct(last[0].conversion_from_start)} convert from the first step to the last`);
      if (!breakdown) card.note.before(overall);
      const columns = [
        ...(breakdown ? [{ key: "breakdown", label: breakdown }] : []),
        { key: "step", num: true }, { key: "name", label: "event" },
        { key: "users", num: true, format: fmtInt },
        { key: "conversion_from_previous", label: "from previous", num: true, format: fmtPct },
        { key: "conversion_from_start", label: "from start", num: true, format: fmtPct },
        { key: "dropped", label: "dropped", num: true, format: fmtInt },
        { key: "median_seconds_from_previous", label: "median time from previous", num: true, format: fmtSeconds },
      ];
      const withDrop = rows.map((r, i) => ({ ...r, dropped: r.step > 1 ? rows[i - 1].users - r.users : null }));
      await draw(card, {
        traces, layout: { barmode: "group", hovermode: "closest", showlegend: Boolean(breakdown), yaxis: { title: { text: value("unit", "user.id") } } },
        rows: withDrop, columns,
      });
    } catch (error) {
      failed(card, error);
    }
  }

  function setupRetention(m) {
    fillSelect($("#cohort_event"), eventOptions(m));
    fillSelect($("#return_events"), eventOptions(m));
  }

  async function renderRetention(ctx, changed) {
    const charts = $("#charts");
    charts.replaceChildren();
    const { metrics, chosen } = await metricChoice("retention", { blank: "Custom events" });
    const custom = value("cohort_event") && values("return_events").length;
    if (chosen && (!custom || changed === "metric")) applyDefinition(chosen, { retention: true });
    if (!chosen && !custom && changed === undefined && metrics.length) {
      $("#metric").value = metrics[0].name;
      applyDefinition(metrics[0], { retention: true });
    }
    syncUrl(true);
    const cohortEvent = value("cohort_event");
    const back = values("return_events");
    if (!cohortEvent || !back.length) {
      charts.append(message("empty", "Choose a cohort event and returning events.", "For example user.signup, then user.login."));
      return;
    }
    const grain = value("grain", "week");
    const show = value("show", "rates");
    const card = chartCard(charts, { id: "retention-chart", title: `Retention: ${cohortEvent} → ${back.join(", ")}`, subtitle: `Cohorts by the ${grain} of their first ${cohortEvent}; cells show the ${show === "rates" ? "share" : "number"} who did a returning event ${grain}s later.` });
    try {
      const result = await api("/v1/query/retention", [
        ["from", ctx.range.from], ["to", ctx.range.to], ["grain", grain], ["cohort_event", cohortEvent],
        ...back.map((b) => ["return_events", b]), ["periods", value("periods")],
      ]);
      const rows = result.rows;
      if (!rows.length) {
        empty(card, "No cohorts in this range.", `Nobody did ${cohortEvent} between ${ctx.range.from} and ${ctx.range.to}.`);
        return;
      }
      const width = Math.max(...rows.map((r) => r.retained.length));
      const x = Array.from({ length: width }, (_, i) => `${periodWord[grain]} ${i}`);
      const y = rows.map((r) => `${r.cohort} (${fmtInt(r.size)})`);
      const z = rows.map((r) => x.map((_, i) => (i < r.retained.length ? (show === "rates" ? r.rates[i] : r.retained[i]) : null)));
      const text = z.map((line) => line.map((v) => (v === null ? "" : show === "rates" ? fmtPct(v) : fmtInt(v))));
      const columns = [{ key: "cohort" }, { key: "size", num: true, format: fmtInt },
        ...x.map((label, i) => ({ key: `p${i}`, label, num: true, format: show === "rates" ? fmtPct : fmtInt }))];
      const flat = rows.map((r) => {
        const out = { cohort: r.cohort, size: r.size };
        x.forEach((_, i) => { out[`p${i}`] = show === "rates" ? r.rates[i] ?? null : r.retained[i] ?? null; });
        return out;
      });
      await draw(card, {
        traces: [{ type: "heatmap", x, y, z, text, texttemplate: "%{text}", colorscale: [[0, "#f4f8fc"], [0.5, "#6fa3d2"], [1, "#1f4e79"]], hoverongaps: false, zmin: 0, zmax: show === "rates" ? 1 : undefined, colorbar: { tickformat: show === "rates" ? ".0%" : "~s" } }],
        layout: { hovermode: "closest", yaxis: { autorange: "reversed", type: "category", rangemode: "normal" }, xaxis: { side: "top", type: "category" }, margin: { l: 120, t: 36 }, height: Math.max(320, 28 * rows.length + 80) },
        rows: flat, columns,
      });
    } catch (error) {
      failed(card, error);
    }
  }

  function setupExplore(m) {
    fillSelect($("#event"), eventOptions(m), { blank: "—" });
    fillSelect($("#unit"), unitOptions(m));
    fillSelect($("#breakdown"), fieldOptions(m), { blank: "None" });
    fillFieldList(m);
  }

  async function renderExplore(ctx, changed) {
    const charts = $("#charts");
    charts.replaceChildren();
    const cat = await catalog();
    const trends = cat.metrics.filter((m) => !["funnel", "retention"].includes(m.type));
    fillSelect($("#metric"), trends.map((m) => ({ value: m.name, label: m.title })), { blank: "—" });
    if (changed === "event" && value("event")) $("#metric").value = "";
    if (changed === "metric" && value("metric")) $("#event").value = "";
    if (!value("event") && !value("metric")) {
      const top = (await ctx.meta).events[0];
      if (top) $("#event").value = top.name;
    }
    syncUrl(true);
    const metric = trends.find((m) => m.name === value("metric"));
    const event = value("event");
    if (!metric && !event) {
      charts.append(message("empty", "No events yet.", "Send events to POST /v1/events, or run `tally demo`."));
      return;
    }
    const grain = value("grain", "week");
    const breakdown = value("breakdown");
    let path;
    let params = [["from", ctx.range.from], ["to", ctx.range.to], ["grain", grain]];
    let measure;
    let title;
    if (metric) {
      path = `/v1/query/${metric.type}`;
      for (const [k, v] of Object.entries(metric.params)) {
        if (k !== "where") params.push([k, Array.isArray(v) ? v : String(v)]);
      }
      const where = Array.isArray(metric.params.where) ? metric.params.where : metric.params.where ? [metric.params.where] : [];
      params.push(...where.map((w) => ["where", w]));
      measure = metric.value;
      title = metric.title;
    } else {
      path = "/v1/query/count";
      params.push(["event", event], ["unit", value("unit")]);
      measure = "events";
      title = event;
    }
    params = [...params, ...values("where").map((w) => ["where", w]), ["breakdown", breakdown]];
    const card = chartCard(charts, { id: "explore-chart", title: `${title} per ${grain}${breakdown ? ` by ${breakdown}` : ""}` });
    const pick = el("label", { class: "measure" }, "Measure ");
    card.note.before(pick);
    try {
      const result = await api(path, params);
      const rows = result.rows;
      const sql = el("details", { class: "sql" }, el("summary", { text: "The SQL that ran" }), el("pre", {}, el("code", { text: result.sql })));
      card.section.append(sql);
      if (!rows.length || !("period" in rows[0])) {
        empty(card, "No data in this range.", "Widen the dates or loosen the filters.");
        return;
      }
      const numeric = Object.keys(rows[0]).filter((k) => typeof rows[0][k] === "number" || rows.some((r) => typeof r[k] === "number"));
      const chosenMeasure = numeric.includes(measure) ? measure : numeric[0];
      const select = el("select", { "aria-label": "Measure" }, numeric.map((k) => el("option", { value: k, selected: k === chosenMeasure }, k)));
      pick.append(select);
      const plot = async (key) => {
        const ratio = ["share", "ratio", "stickiness"].includes(key);
        const columns = Object.keys(rows[0]).map((k) => ({ key: k, num: numeric.includes(k), format: numeric.includes(k) ? (["share", "ratio", "stickiness"].includes(k) ? fmtPct : fmtNum) : null }));
        await draw(card, {
          traces: linesByGroup(rows, "period", key, breakdown ? "breakdown" : (rows[0].action !== undefined ? "action" : null), { name: key }),
          layout: { yaxis: { tickformat: ratio ? ".0%" : "~s", title: { text: key } }, showlegend: Boolean(breakdown) || rows[0].action !== undefined },
          rows, columns,
        });
        card.section.append(sql);
      };
      select.addEventListener("change", () => plot(select.value));
      if (rows.every((r) => !r[chosenMeasure])) {
        empty(card, "Nothing counted in this range.", "Widen the dates or loosen the filters.");
        card.table.replaceChildren(renderTable({ columns: Object.keys(rows[0]).map((k) => ({ key: k })), rows }, title));
        return;
      }
      await plot(chosenMeasure);
    } catch (error) {
      failed(card, error);
    }
  }

  function tile(label, valueText, { raw, note, id } = {}) {
    return el("div", { class: "tile", id },
      el("dt", { text: label }),
      el("dd", { dataset: raw === undefined || raw === null ? {} : { value: String(raw) } }, valueText, note ? el("small", { text: note }) : null));
  }

  /** A client library and version as one label. */
  const clientLabel = (r) => (r.library === null ? "(no library)" : `${r.library} ${r.version ?? "(no version)"}`);
  function fmtMs(ms) {
    if (ms === null || ms === undefined) return "—";
    if (Math.abs(ms) < 1000) return `${numFormat.format(ms)} ms`;
    return `${ms < 0 ? "−" : ""}${fmtSeconds(Math.abs(ms) / 1000)}`;
  }

  async function renderHealth(ctx) {
    const charts = $("#charts");
    charts.replaceChildren();
    const tiles = $("#tiles");
    const range = { from: ctx.range.from, to: ctx.range.to };
    // Every answer is asked for at once; each section shows its own error.
    const lossPromise = api("/v1/quality/loss", { ...range, grain: "day" });
    const skewPromise = api("/v1/quality/skew", { ...range, grain: "all" });
    const alertsPromise = api("/v1/quality/alerts", { since: range.from, notices: "true", limit: "100" });
    [lossPromise, skewPromise, alertsPromise].forEach((p) => p.catch(() => {}));
    const health = await api("/v1/health", ctx.range);
    let loss = null;
    try {
      loss = await lossPromise;
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) throw error;
    }
    const received = health.days.reduce((s, d) => s + d.received, 0);
    const failedTotal = health.days.reduce((s, d) => s + d.failed, 0);
    const rate = received + failedTotal ? failedTotal / (received + failedTotal) : null;
    const totals = loss ? loss.totals : null;
    const lossRate = totals ? totals.loss_rate : null;
    const duplicates = totals ? totals.duplicates_natural + totals.duplicates_synthetic : null;
    tiles.replaceChildren(
      tile("Latest event", fmtTime(health.latest_event), { note: fmtAgo(health.latest_event), id: "tile-latest" }),
      tile("Latest received", fmtTime(health.latest_received), { note: fmtAgo(health.latest_received) }),
      tile("Events received", fmtInt(received), { raw: received, id: "tile-received", note: `${health.from} – ${health.to}` }),
      tile("Events refused", fmtInt(failedTotal), { raw: failedTotal, id: "tile-failed", note: rate === null ? "" : `${fmtPct(rate)} of all sent` }),
      tile("Waiting in the spool", fmtInt(health.spool_backlog), { raw: health.spool_backlog, note: "segments not yet in the lake" }),
      tile("Quarantined segments", fmtInt(health.quarantined), { raw: health.quarantined, note: health.quarantined ? "see docs/storage.md" : "none" }),
      tile("Loss rate", !totals ? "—" : lossRate === null ? "no sequenced messages" : fmtPct(lossRate), {
        raw: lossRate, id: "tile-loss",
        note: !totals ? "could not be measured" : lossRate === null ? "loss is measured from session.seq" : `${fmtInt(totals.lost)} of ${fmtInt(totals.expected)} messages`,
      }),
      tile("Duplicates", totals ? fmtInt(duplicates) : "—", {
        raw: duplicates, id: "tile-duplicates",
        note: totals ? `${fmtInt(totals.duplicates_natural)} retries, ${fmtInt(totals.duplicates_synthetic)} reused ids` : "",
      }),
      tile("Bot rate", health.bot_rate === null || health.bot_rate === undefined ? "–" : fmtPct(health.bot_rate), { note: health.bot_rate === null || health.bot_rate === undefined ? "nothing received" : "crawlers and automation, left out of analyses" }),
    );
    const perDay = chartCard(charts, { id: "health-days", title: "Events per day", subtitle: "Received: by the UTC day the collector stored them. Happened: by the day of their client time (they differ for imported or late events). Refused: events the collector turned away, right axis." });
    if (!received && !failedTotal) {
      empty(perDay, "Nothing received in this range.", "Send events to POST /v1/events, or widen the dates.");
    } else {
      const x = health.days.map((d) => d.day);
      await draw(perDay, {
        traces: [
          { type: "bar", name: "received", x, y: health.days.map((d) => d.received), marker: { color: COLORS[0] } },
          { type: "bar", name: "happened", x, y: health.days.map((d) => d.occurred), marker: { color: COLORS[5] } },
          { type: "scatter", mode: "lines+markers", name: "refused", x, y: health.days.map((d) => d.failed), line: { color: COLORS[4] }, marker: { size: 4 }, yaxis: "y2" },
        ],
        layout: { barmode: "group", margin: { r: 56 }, yaxis: { title: { text: "events" } }, yaxis2: { title: { text: "refused" }, overlaying: "y", side: "right", rangemode: "tozero", showgrid: false, ...countAxis(Math.max(...health.days.map((d) => d.failed))) } },
        rows: health.days,
        columns: [{ key: "day" }, { key: "received", num: true, format: fmtInt }, { key: "occurred", label: "happened", num: true, format: fmtInt }, { key: "failed", label: "refused", num: true, format: fmtInt }],
      });
      perDay.table.replaceChildren(el("details", {}, el("summary", { text: "Table" }), perDay.table.firstChild));
    }
    const reasons = chartCard(charts, { id: "health-reasons", title: "Refused events by reason", subtitle: "`tally failed` lists them one by one." });
    if (!health.failed_by_reason.length) {
      empty(reasons, "No refused events in this range.", "Every event sent was valid.");
    } else {
      const byCount = [...health.failed_by_reason].reverse();
      await draw(reasons, {
        traces: [{ type: "bar", orientation: "h", x: byCount.map((r) => r.count), y: byCount.map((r) => r.code), marker: { color: COLORS[4] } }],
        layout: { hovermode: "closest", margin: { l: 160 }, height: Math.max(220, 40 * byCount.length + 80), xaxis: { type: "linear", rangemode: "tozero", title: { text: "refused events" }, ...countAxis(Math.max(...byCount.map((r) => r.count))) }, yaxis: { type: "category", rangemode: "normal" } },
        rows: health.failed_by_reason,
        columns: [{ key: "code" }, { key: "count", num: true, format: fmtInt }, { key: "latest", format: fmtTime }, { key: "example", label: "example message" }],
      });
    }
    const notes = (health.notes || []).filter((n) => !/loss/.test(n) || !totals);
    if (notes.length) charts.append(el("p", { class: "count" }, notes.join(" ")));
    const trust = $("#trust");
    trust.replaceChildren();
    await renderLoss(trust, lossPromise, range);
    await renderSkew(trust, skewPromise);
    await section($("#alerts"), alertsPromise, (body) => renderAlerts(body, range));
  }

  const LOSS_COLUMNS = [
    { key: "day" },
    { key: "library", format: (v) => v ?? "(none)" },
    { key: "version", format: (v) => v ?? "—" },
    { key: "sessions", num: true, format: fmtInt },
    { key: "expected", num: true, format: fmtInt },
    { key: "received", num: true, format: fmtInt },
    { key: "lost", num: true, format: fmtInt },
    { key: "loss_rate", label: "loss rate", num: true, format: fmtPct },
    { key: "seq_conflicts", label: "seq conflicts", num: true, format: fmtInt },
    { key: "events", num: true, format: fmtInt },
    { key: "duplicates_natural", label: "retries", num: true, format: fmtInt },
    { key: "duplicates_synthetic", label: "reused ids", num: true, format: fmtInt },
  ];

  async function renderLoss(container, promise, range) {
    const lossCard = chartCard(container, { id: "quality-loss", title: "Message loss per day", subtitle: "From session.seq, per client library version: the share of messages sent (1 to the highest seq of each session) that never arrived. A session counts on the day it started. `tally quality loss` prints the same." });
    const dupCard = chartCard(container, { id: "quality-duplicates", title: "Duplicates per day", subtitle: "Retries: an event delivered again with the same payload (harmless, counted once). Reused ids: one event_id sent with a different payload — a client bug. Each event counts on the day it was first delivered." });
    let loss;
    try {
      loss = await promise;
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) throw error;
      failed(lossCard, error);
      failed(dupCard, error);
      return;
    }
    const rows = loss.rows;
    const sequenced = rows.filter((r) => r.expected > 0);
    if (!sequenced.length) {
      empty(lossCard, "No sequenced messages in this range.", "Loss is measured from session.seq: send it with each event (the SDKs do), or widen the dates.");
      lossCard.table.replaceChildren(rows.length ? renderTable({ columns: LOSS_COLUMNS, rows, caption: "Loss and duplicates per day and client" }, lossCard.title) : "");
      lossCard.rows = rows;
      lossCard.columns = LOSS_COLUMNS;
    } else {
      await draw(lossCard, {
        traces: linesByGroup(sequenced.map((r) => ({ ...r, client: clientLabel(r) })), "day", "loss_rate", "client"),
        layout: {
          // the page's days, as the events chart above shows them
          xaxis: { type: "date", autorange: false, range: dayAxisRange(range), tickformat: "%b %-d" },
          yaxis: { title: { text: "loss rate" }, tickformat: ".1%", range: [0, Math.max(0.05, ...sequenced.map((r) => r.loss_rate)) * 1.1] },
        },
        rows,
        columns: LOSS_COLUMNS,
        table: { columns: LOSS_COLUMNS, rows, caption: "Loss and duplicates per day and client" },
      });
      lossCard.table.replaceChildren(el("details", {}, el("summary", { text: "Table: every day and client" }), lossCard.table.firstChild));
    }
    const days = new Map();
    for (const r of rows) {
      const d = days.get(r.day) || { day: r.day, events: 0, duplicates_natural: 0, duplicates_synthetic: 0 };
      d.events += r.events;
      d.duplicates_natural += r.duplicates_natural;
      d.duplicates_synthetic += r.duplicates_synthetic;
      days.set(r.day, d);
    }
    const perDay = Array.from(days.values());
    if (!perDay.some((d) => d.duplicates_natural || d.duplicates_synthetic)) {
      empty(dupCard, "No duplicates in this range.", perDay.length ? "Every event arrived exactly once." : "No events in this range.");
      return;
    }
    const x = perDay.map((d) => d.day);
    const top = Math.max(...perDay.map((d) => d.duplicates_natural + d.duplicates_synthetic));
    await draw(dupCard, {
      traces: [
        { type: "bar", name: "retries", x, y: perDay.map((d) => d.duplicates_natural), marker: { color: COLORS[5] } },
        { type: "bar", name: "reused ids", x, y: perDay.map((d) => d.duplicates_synthetic), marker: { color: COLORS[4] } },
      ],
      layout: { barmode: "stack", xaxis: { type: "date", autorange: false, range: dayAxisRange(range), tickformat: "%b %-d" }, yaxis: { title: { text: "duplicates" }, ...countAxis(top) } },
      rows: perDay,
      columns: [{ key: "day" }, { key: "events", num: true, format: fmtInt }, { key: "duplicates_natural", label: "retries", num: true, format: fmtInt }, { key: "duplicates_synthetic", label: "reused ids", num: true, format: fmtInt }],
    });
    dupCard.table.replaceChildren(el("details", {}, el("summary", { text: "Table" }), dupCard.table.firstChild));
  }

  /** The page's days on a date axis, half a day of margin on each side (as bars have). */
  function dayAxisRange(range) {
    const at = (ms) => new Date(ms).toISOString().slice(0, 19).replace("T", " ");
    return [at(dayMs(range.from) - DAY_MS / 2), at(dayMs(range.to) + DAY_MS / 2)];
  }

  const SKEW_UNITS = [["days", 86400000], ["hours", 3600000], ["minutes", 60000], ["seconds", 1000], ["milliseconds", 1]];

  async function renderSkew(container, promise) {
    const card = chartCard(container, { id: "quality-skew", title: "Clock skew by client", subtitle: "received_ts − sent_ts of each event that carried sent_ts (positive: the client's clock is behind), per client library version, for the events received in the range. Corrected: events whose client_ts the collector moved because the skew was beyond its threshold. `tally quality skew` prints the same." });
    let skew;
    try {
      skew = await promise;
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) throw error;
      failed(card, error);
      return;
    }
    const rows = skew.rows.map((r) => ({ ...r, client: clientLabel(r) }));
    const columns = [
      { key: "client" },
      { key: "events", num: true, format: fmtInt },
      { key: "measured", num: true, format: fmtInt },
      { key: "median_skew_ms", label: "median skew", num: true, format: fmtMs },
      { key: "median_abs_skew_ms", label: "median |skew|", num: true, format: fmtMs },
      { key: "p95_abs_skew_ms", label: "p95 |skew|", num: true, format: fmtMs },
      { key: "max_abs_skew_ms", label: "max |skew|", num: true, format: fmtMs },
      { key: "corrected", num: true, format: fmtInt },
      { key: "corrected_share", label: "corrected share", num: true, format: fmtPct },
    ];
    const measured = rows.filter((r) => r.measured > 0);
    if (!measured.length) {
      empty(card, rows.length ? "No event in this range carried sent_ts." : "No events in this range.", "The skew is measured from sent_ts, which the SDKs stamp on every batch.");
      if (rows.length) card.table.replaceChildren(renderTable({ columns, rows, caption: "Clock skew per client" }, card.title));
      card.rows = rows;
      card.columns = columns;
      return;
    }
    const shown = [...measured].reverse();
    // One unit for the axis that suits the largest bar: skews run from milliseconds to days.
    const top = Math.max(...shown.map((r) => r.p95_abs_skew_ms));
    const [unit, per] = SKEW_UNITS.find(([, ms]) => top >= 2 * ms) || SKEW_UNITS[SKEW_UNITS.length - 1];
    await draw(card, {
      traces: [
        { type: "bar", orientation: "h", name: "median |skew|", y: shown.map((r) => r.client), x: shown.map((r) => r.median_abs_skew_ms / per), marker: { color: COLORS[0] } },
        { type: "bar", orientation: "h", name: "p95 |skew|", y: shown.map((r) => r.client), x: shown.map((r) => r.p95_abs_skew_ms / per), marker: { color: COLORS[1] } },
      ],
      layout: { barmode: "group", hovermode: "closest", margin: { l: 200 }, height: Math.max(240, 56 * shown.length + 100), xaxis: { type: "linear", rangemode: "tozero", title: { text: unit } }, yaxis: { type: "category", rangemode: "normal" } },
      rows,
      columns,
      table: { columns, rows, caption: "Clock skew per client" },
    });
  }

  function renderAlerts(body, range) {
    const end = `${range.to}T23:59:59.999999Z`;
    const alerts = body.alerts.filter((a) => a.at <= end);
    const node = $("#alerts");
    node.dataset.count = String(alerts.length);
    if (!alerts.length) {
      node.replaceChildren(message("empty", "No alert fired or resolved in this range.", "Alert rules are set per stream (see docs/data-trust.md); `tally quality check` evaluates them now."));
      return;
    }
    const columns = [
      { key: "at", label: "when", format: fmtTime },
      { key: "notice", format: (v) => badge(v, v === "fired" ? "status-expired" : "status-collecting") },
      { key: "stream" },
      { key: "label", label: "rule" },
      { key: "message" },
      { key: "delivery", label: "sent to", format: (v) => {
        if (!v) return "—";
        const hook = v.webhook;
        if (!hook) return "the log";
        return `the log and the webhook (${hook.status === "sent" ? "delivered" : "not delivered"})`;
      } },
    ];
    node.replaceChildren(renderTable({ columns, rows: alerts, caption: "Alert notices, newest first" }, "Alert history"));
  }

  const PAGE_OF = { kpis: "/", "core-actions": "/core-actions", funnel: "/funnel", retention: "/retention", explore: "/explore" };

  async function renderCatalog() {
    const cat = await catalog();
    const q = value("q").toLowerCase();
    const problems = $("#problems");
    problems.replaceChildren(...(cat.problems.length ? [message("error", `${cat.problems.length} problem(s) in the catalog files:`, ""), el("ul", {}, cat.problems.map((p) => el("li", { text: p })))] : []));
    const matches = cat.metrics.filter((m) => !q || [m.name, m.title, m.description, m.owner || "", ...m.teams, ...m.tags, m.type].join(" ").toLowerCase().includes(q));
    const count = $("#catalog-count");
    count.dataset.value = String(matches.length);
    count.textContent = `${matches.length} of ${cat.metrics.length} metrics${q ? ` match “${q}”` : ""} · defined in ${cat.directory}`;
    const link = (m, slugName) => {
      const href = slugName === "explore" ? `/explore?metric=${encodeURIComponent(m.name)}` : slugName === "kpis" ? "/" : `${PAGE_OF[slugName]}?metric=${encodeURIComponent(m.name)}`;
      return el("a", { href, class: "tag" }, slugName);
    };
    const columns = [
      { key: "name", format: (_, m) => el("span", {}, el("strong", { text: m.title }), el("br"), el("code", { text: m.name })) },
      { key: "description", format: (v) => v },
      { key: "type" },
      { key: "owner", format: (v, m) => el("span", {}, v || "—", el("br"), ...m.teams.map((t) => el("span", { class: "tag", text: t }))) },
      { key: "importance" }, { key: "status" }, { key: "grain" },
      { key: "used_in", label: "used in", format: (v, m) => el("span", {}, v.map((s) => link(m, s))) },
      { key: "materialized", format: (v) => (v.length ? v.join(", ") : "no") },
      { key: "file", label: "defined in", format: (v, m) => `${v}:${m.line}` },
    ];
    const table = renderTable({ columns, rows: matches, caption: "Metric definitions" }, "Catalog");
    $("#catalog").replaceChildren(matches.length ? table : message("empty", "No metric matches.", q ? "Clear the search." : "Add definitions to the catalog directory (see docs/catalog.md)."));
  }

  // -- streams, models and fields (the control plane, read-only) -------------------------------

  const SOON_DAYS = 30;
  const fmtDay = (iso) => (iso ? iso.slice(0, 10) : "—");
  const plural = (n, word) => `${fmtInt(n)} ${word}${n === 1 ? "" : "s"}`;
  const badge = (text, kind) => el("span", { class: `badge ${kind}`, text });
  const expiresSoon = (s) => s.expires_in_days !== null && s.expires_in_days >= 0 && s.expires_in_days < SOON_DAYS;

  function expiry(s) {
    if (!s.expires) return "never";
    const days = s.expires_in_days;
    if (days < 0) return el("span", { class: "past" }, `${fmtDay(s.expires)} (expired)`);
    const when = `${fmtDay(s.expires)} (${days === 0 ? "today" : `in ${plural(days, "day")}`})`;
    if (!expiresSoon(s)) return when;
    return el("span", { class: "soon" }, el("strong", { text: "Soon: " }), when);
  }

  /** Render one section's answer, or its own error; a missing key stops the whole page. */
  async function section(container, promise, render) {
    try {
      render(await promise);
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) throw error;
      container.replaceChildren(errorMessage(error));
    }
  }

  function renderStreamTable(body) {
    const streams = body.streams.map((s) => ({ ...s, last_7_days: s.volume.last_7_days, last_28_days: s.volume.last_28_days }));
    const count = $("#streams-count");
    count.dataset.value = String(streams.length);
    const soon = streams.filter(expiresSoon).length;
    count.textContent = `${plural(streams.length, "stream")}${soon ? ` · ${soon} expire${soon === 1 ? "s" : ""} within ${SOON_DAYS} days` : ""} · events per UTC day of when they happened, today included`;
    if (!streams.length) {
      $("#streams").replaceChildren(message("empty", "No streams defined yet.", "Every event goes to the unrouted stream. Define streams with POST /v1/admin/streams or `tally config apply tally.yaml` (see docs/http-api.md)."));
    } else {
      const columns = [
        { key: "name", format: (v, s) => el("span", {}, el("strong", { text: v }), s.description ? el("small", { class: "desc", text: s.description }) : null) },
        { key: "status", format: (v) => badge(v, `status-${v}`) },
        { key: "owner", format: (v) => v || "—" },
        { key: "events", label: "events routed", format: (v) => (v.length ? el("span", {}, v.map((e) => el("code", { class: "tag", text: e }))) : "none") },
        { key: "sample", format: (v) => (v ? `${fmtPct(v.rate)} of ${v.unit}s` : "all") },
        { key: "expires", format: (_, s) => expiry(s) },
        { key: "retention_days", label: "retention", format: (v) => (v ? plural(v, "day") : "until deleted") },
        { key: "last_7_days", label: "events, 7 days", num: true, format: fmtInt },
        { key: "last_28_days", label: "events, 28 days", num: true, format: fmtInt },
      ];
      const table = renderTable({ columns, rows: streams, caption: "Streams: what each receives, keeps and stores, and for how long" }, "Streams");
      $$("tbody tr", table).forEach((tr, i) => {
        if (expiresSoon(streams[i])) tr.classList.add("expiring");
        tr.dataset.stream = streams[i].name;
      });
      $("#streams").replaceChildren(table);
    }
    const other = body.other.filter((o) => o.volume.last_28_days);
    $("#other-streams").replaceChildren(...(other.length ? [el("p", { class: "count" }, "Also in the lake: ",
      other.flatMap((o, i) => [i ? "; " : "", el("strong", { text: o.stream === null ? "events stored before streams existed" : o.stream === body.unrouted_stream ? `${o.stream} (undeclared events)` : `${o.stream} (no longer defined)` }),
        ` ${fmtInt(o.volume.last_7_days)} in 7 days, ${fmtInt(o.volume.last_28_days)} in 28`]), ".")] : []));
  }

  function checkList(results) {
    if (!results.length) return "not run yet (tally models check, or POST /v1/admin/models/NAME/check)";
    return el("ul", { class: "checks" }, results.map((r) => el("li", { class: r.passed ? "passed" : "failed" },
      el("strong", { text: r.passed ? "passed " : "FAILED " }), el("code", { text: r.check }), ` — ${r.message}`,
      r.ran_at ? el("small", { text: ` (${fmtTime(r.ran_at)})` }) : null)));
  }

  function renderModelTable(body) {
    const models = body.models;
    if (!models.length) {
      $("#models").replaceChildren(message("empty", "No data models yet.", "Define one with POST /v1/admin/models or under `models:` in tally.yaml (see docs/http-api.md)."));
      return;
    }
    const columns = [
      { key: "name", label: "model", format: (v, m) => el("span", {}, el("strong", { text: v }), m.description ? el("small", { class: "desc", text: m.description }) : null) },
      { key: "stream" },
      { key: "materialize", label: "as" },
      { key: "built_at", label: "built", format: (v) => (v ? fmtTime(v) : "not yet") },
      { key: "failing", label: "failing checks", num: true, format: fmtInt },
      { key: "results", label: "latest check results (failed first)", format: (v, m) => (m.checks && m.checks.length ? checkList(v) : "no checks defined") },
    ];
    const table = renderTable({ columns, rows: models, caption: "Data models, those with failing checks first" }, "Models");
    $$("tbody tr", table).forEach((tr, i) => {
      if (models[i].failing) tr.classList.add("failing");
    });
    $("#models").replaceChildren(table);
  }

  function renderFieldTable(body) {
    const q = body.q;
    const count = $("#fields-count");
    count.dataset.value = String(body.fields.length);
    count.textContent = `${fmtInt(body.fields.length)} of ${plural(body.total, "field")}${q ? ` match “${q}”` : ""} · examples have personal data redacted`;
    if (!body.fields.length) {
      $("#fields").replaceChildren(body.total
        ? message("empty", "No field matches.", "Clear the search or try another word.")
        : message("empty", "No fields seen yet.", "Send events to POST /v1/events, or run `tally demo`."));
      return;
    }
    const columns = [
      { key: "name", label: "field", format: (v) => el("code", { text: v }) },
      { key: "type" },
      { key: "per_day", label: "events per day", num: true, format: fmtNum },
      { key: "trend", format: (v, f) => `${v}${f.change_pct === null ? "" : ` (${f.change_pct > 0 ? "+" : ""}${numFormat.format(f.change_pct)}%)`}` },
      { key: "first_seen", label: "first seen", format: fmtDay },
      { key: "last_seen", label: "last seen", format: fmtDay },
      { key: "streams", format: (v) => (v.length ? el("span", {}, v.map((n) => el("span", { class: "tag", text: n }))) : "—") },
      { key: "examples", format: (v) => (v.length ? v.join(" · ") : "—") },
      { key: "personal", label: "personal?", format: (v) => (v ? el("span", {}, badge("looks personal", "personal"), " ", v) : "no") },
    ];
    $("#fields").replaceChildren(renderTable({ columns, rows: body.fields, caption: "Every field seen in the lake" }, "Fields"));
  }

  async function renderStreams() {
    const streams = api("/v1/catalog/streams");
    const models = api("/v1/catalog/models");
    const fields = api("/v1/catalog/fields", { q: value("q") });
    // Each table shows as soon as its answer arrives; the field catalog may take longest.
    await Promise.all([
      section($("#streams"), streams, renderStreamTable),
      section($("#models"), models, renderModelTable),
      section($("#fields"), fields, renderFieldTable),
    ]);
  }

  // -- experiments: the readout of each A/B test (tallystick.experiments) -----------------------

  const ROLES = [
    ["primary", "Primary metrics", "What the experiment is decided on."],
    ["secondary", "Secondary metrics", "What else the change may move: to understand the result, not to decide it."],
    ["guardrail", "Guardrails", "What must not get worse, whatever the primary metrics say."],
  ];
  const VERDICT_COLORS = { better: "#1a7f37", worse: "#b42318", inconclusive: "#5b6775" };
  const sigFormat = new Intl.NumberFormat("en", { maximumSignificantDigits: 4 });
  const pFormat = new Intl.NumberFormat("en", { maximumSignificantDigits: 2 });
  const effectFormat = new Intl.NumberFormat("en", { style: "percent", maximumFractionDigits: 1, signDisplay: "exceptZero" });
  const rateFormat = new Intl.NumberFormat("en", { style: "percent", maximumFractionDigits: 2 });
  const isNum = (v) => typeof v === "number" && Number.isFinite(v);
  const fmtSig = (v) => (isNum(v) ? sigFormat.format(v) : "—");
  const fmtEffect = (v) => (isNum(v) ? effectFormat.format(v) : "—");
  const fmtP = (v) => (!isNum(v) ? "—" : v < 0.0001 ? "< 0.0001" : pFormat.format(v));
  const pIs = (v) => (isNum(v) && v < 0.0001 ? "p < 0.0001" : `p = ${fmtP(v)}`);
  const fmtCi = (ci) => (Array.isArray(ci) && isNum(ci[0]) && isNum(ci[1]) ? `${fmtEffect(ci[0])} to ${fmtEffect(ci[1])}` : "—");
  const correctionText = (c) => ({ holm: "Holm-adjusted", bh: "Benjamini–Hochberg-adjusted" })[c] || "not adjusted";
  const experimentHref = (key) => `/experiments?key=${encodeURIComponent(key)}`;
  const variationKey = (v) => (v && typeof v === "object" ? v.key : String(v));

  /** GET /v1/experiments: the list (an array, or {experiments: [...]}). */
  const experimentList = (body) => (Array.isArray(body) ? body : body.experiments || []);

  /** An experiment's metrics by role, from {primary, secondary, guardrails} or [{metric, role}]. */
  function metricsByRole(metrics) {
    const out = { primary: [], secondary: [], guardrail: [] };
    const name = (m) => (m && typeof m === "object" ? m.metric : String(m));
    if (Array.isArray(metrics)) {
      for (const m of metrics) (out[m.role] || out.secondary).push(name(m));
    } else if (metrics) {
      for (const [role, items] of Object.entries(metrics)) {
        const one = role === "guardrails" ? "guardrail" : role;
        if (out[one]) out[one].push(...(items || []).map(name));
      }
    }
    return out;
  }

  function renderExperimentTable(experiments) {
    const count = $("#experiments-count");
    count.dataset.value = String(experiments.length);
    const running = experiments.filter((e) => e.status === "running").length;
    count.textContent = `${plural(experiments.length, "experiment")}${experiments.length ? ` · ${running} running` : ""}`;
    if (!experiments.length) {
      $("#experiments").replaceChildren(message("empty", "No experiments yet.", "Describe one in a YAML file, then `tally experiments apply FILE` and `tally experiments start KEY` (see docs/experiments.md), or PUT /v1/admin/experiments/KEY."));
      return;
    }
    const columns = [
      { key: "key", label: "experiment", format: (v, e) => el("span", {}, el("a", { href: experimentHref(v) }, el("strong", { text: e.name || v })), el("br"), el("code", { text: v })) },
      { key: "status", format: (v) => badge(v, `status-${v}`) },
      { key: "owner", format: (v) => v || "—" },
      { key: "unit", format: (v) => el("code", { text: v }) },
      { key: "variations", format: (v) => (v && v.length ? v.map(variationKey).join(" / ") : "—") },
      { key: "start", format: fmtTime },
      { key: "stop", format: fmtTime },
      { key: "primary", label: "primary metrics", format: (v) => (v.length ? el("span", {}, v.map((m) => el("code", { class: "tag", text: m }))) : "—") },
    ];
    const rows = experiments.map((e) => ({ ...e, primary: metricsByRole(e.metrics).primary }));
    const table = renderTable({ columns, rows, caption: "Experiments: open one for its results" }, "Experiments");
    $$("tbody tr", table).forEach((tr, i) => { tr.dataset.experiment = rows[i].key; });
    $("#experiments").replaceChildren(table);
  }

  function experimentHead(r) {
    const x = r.experiment;
    const variations = r.variations || [];
    const total = variations.reduce((s, v) => s + (v.units || 0), 0);
    const facts = [
      ["Owner", el("span", {}, x.owner || "—", " ", ...(x.teams || []).map((t) => el("span", { class: "tag", text: t })))],
      ["Unit", el("code", { text: r.unit || x.unit })],
      ["Flag", el("span", {}, el("code", { text: x.flag || x.key }), ` in ${x.environment || "prod"}`)],
      ["Started", fmtTime(x.start)],
      ["Stopped", x.stop ? fmtTime(x.stop) : x.status === "running" ? "still running" : "—"],
      ["Analysed", el("span", {}, fmtTime(r.analysed_at), r.window && r.window.end ? el("small", { class: "desc", text: `exposures from ${fmtTime(r.window.start)} to ${fmtTime(r.window.end)}` }) : null)],
      ["Statistics", `${fmtPct(1 - (r.alpha ?? x.alpha ?? 0.05))} intervals${r.sequential ? ", always valid (sequential: safe to peek)" : ""}; p-values ${correctionText(r.correction)}`],
    ];
    if (!r.analysed_at) facts.splice(5);  // the definition only: no readout to describe
    if (r.srm && isNum(r.srm.p_value)) {
      facts.push(["Sample ratio", r.srm.flagged ? el("strong", { class: "past", text: `mismatch (${pIs(r.srm.p_value)})` }) : `as planned (${pIs(r.srm.p_value)})`]);
    }
    const planned = r.planned_sample_size;
    const progress = isNum(r.progress) ? r.progress : planned ? total / planned : null;
    const progressText = planned
      ? `${fmtInt(total)} of ${fmtInt(planned)} planned units exposed (${fmtPct(progress)})`
      : `${fmtInt(total)} units exposed · no planned sample size (set planned_sample_size, or an mde and a baseline for the readout to compute it)`;
    const variationColumns = [
      { key: "key", label: "variation", format: (v, row) => el("span", {}, el("strong", { text: v }), row.control ? " (control)" : "", row.name && row.name !== v ? el("small", { class: "desc", text: row.name }) : null) },
      { key: "weight", label: "planned share", num: true, format: fmtPct },
      { key: "units", label: "units exposed", num: true, format: fmtInt },
      { key: "share", label: "observed share", num: true, format: fmtPct },
    ];
    const variationRows = variations.map((v) => ({ ...v, share: total ? v.units / total : null }));
    const table = renderTable({ columns: variationColumns, rows: variationRows, caption: "Variations: planned and observed split" }, "Variations");
    $$("tbody tr", table).forEach((tr, i) => { tr.dataset.variation = variations[i].key; });
    return el("section", { class: "card experiment-head", id: "experiment-head", "aria-labelledby": "experiment-title" },
      el("div", { class: "card-head" },
        el("h2", { id: "experiment-title" }, x.name || x.key, " ", badge(x.status, `status-${x.status}`)),
        el("code", { text: x.key })),
      x.hypothesis ? el("p", { class: "hypothesis" }, el("strong", { text: "Hypothesis: " }), x.hypothesis) : null,
      el("dl", { class: "facts" }, facts.map(([dt, dd]) => el("div", {}, el("dt", { text: dt }), el("dd", {}, dd)))),
      r.analysed_at ? el("div", { class: "progress" },
        el("label", { for: "experiment-progress", id: "experiment-progress-label" }, progressText),
        isNum(progress) ? el("progress", { id: "experiment-progress", max: "1", value: String(Math.min(progress, 1)), dataset: { value: String(progress) } }, fmtPct(progress)) : null) : null,
      variations.length ? el("div", { class: "table-wrap" }, table) : null);
  }

  function srmBanner(r) {
    const s = r.srm;
    const observed = s.observed || {};
    const expected = s.expected || {};
    const rows = (r.variations || []).map((v) => ({
      variation: v.key, weight: v.weight, observed: observed[v.key], expected: expected[v.key],
      difference: isNum(expected[v.key]) && expected[v.key] ? (observed[v.key] - expected[v.key]) / expected[v.key] : null,
    }));
    const columns = [
      { key: "variation" },
      { key: "weight", label: "planned share", num: true, format: fmtPct },
      { key: "observed", label: "units observed", num: true, format: fmtInt },
      { key: "expected", label: "units expected", num: true, format: fmtNum },
      { key: "difference", label: "difference", num: true, format: fmtEffect },
    ];
    return el("section", { class: "message error srm", id: "srm-warning", role: "alert", "aria-labelledby": "srm-title", dataset: { pValue: String(s.p_value) } },
      el("h2", { id: "srm-title", text: "Sample ratio mismatch: do not trust these results" }),
      el("p", {}, `The units are not split between the variations as their weights say: a split this uneven happens by chance with ${pIs(s.p_value)}, below the threshold of ${fmtP(s.threshold ?? 0.001)}. `,
        "Something assigns or counts units unevenly — one variation that fails to log its exposures, crashes or redirects that lose users, bots, a ruleset changed mid-experiment — so every effect below may be biased, in either direction. ",
        el("strong", { text: "Find and fix the cause before reading the results" }), "; if the assignment itself was wrong, restart the experiment."),
      renderTable({ columns, rows, caption: "Units exposed per variation: observed, and expected from the weights" }, "Sample ratio"));
  }

  /** One row per metric × treatment of a role's metrics (what the forest plot and its table show). */
  function effectRows(metrics) {
    const rows = [];
    for (const m of metrics) {
      const control = m.variations.find((v) => v.control) || m.variations[0];
      for (const v of m.variations) {
        if (v === control || v.control) continue;
        rows.push({
          metric: m.metric, title: m.title || m.metric, kind: m.kind, inverse: Boolean(m.inverse),
          variation: v.variation, control: control.variation,
          control_mean: control.mean, control_n: control.n, mean: v.mean, n: v.n,
          effect: v.effect, ci_low: v.ci ? v.ci[0] : null, ci_high: v.ci ? v.ci[1] : null,
          absolute_effect: v.absolute_effect, p_value: v.p_value, p_value_adjusted: v.p_value_adjusted,
          chance_to_win: v.chance_to_win, risk: v.risk ? v.risk.treatment : null,
          risk_control: v.risk ? v.risk.control : null, verdict: v.verdict || "inconclusive", status: v.status,
        });
      }
    }
    return rows;
  }

  const meanFormat = (row) => (row.kind === "conversion" ? (v) => (isNum(v) ? rateFormat.format(v) : "—") : fmtSig);
  const EFFECT_COLUMNS = [
    { key: "metric", format: (v, row) => el("span", {}, el("strong", { text: row.title }), el("br"), el("code", { text: v }), row.inverse ? el("small", { class: "desc", text: "lower is better" }) : null) },
    { key: "variation", format: (v, row) => `${v} vs ${row.control}` },
    { key: "verdict", format: (v, row) => el("span", {}, badge(v, `verdict-${v}`), row.status && row.status !== "ok" ? el("small", { class: "desc", text: row.status.replace(/_/g, " ") }) : null) },
    { key: "control_mean", label: "control mean", num: true, format: (v, row) => meanFormat(row)(v) },
    { key: "mean", label: "treatment mean", num: true, format: (v, row) => meanFormat(row)(v) },
    { key: "effect", label: "effect", num: true, format: fmtEffect },
    { key: "ci_low", label: "interval", num: true, format: (_, row) => fmtCi([row.ci_low, row.ci_high]) },
    { key: "p_value_adjusted", label: "p-value (adjusted)", num: true, format: (v, row) => (isNum(row.p_value) && row.p_value !== v ? `${fmtP(v)} (raw ${fmtP(row.p_value)})` : fmtP(v)) },
    { key: "chance_to_win", label: "chance to win", num: true, format: fmtPct },
    { key: "risk", label: "risk of shipping", num: true, format: (v) => (isNum(v) ? rateFormat.format(v) : "—") },
  ];
  /** The CSV behind a forest plot: every number, unformatted. */
  const EFFECT_CSV = ["metric", "variation", "control", "control_n", "control_mean", "n", "mean", "effect", "ci_low", "ci_high", "absolute_effect", "p_value", "p_value_adjusted", "chance_to_win", "risk", "risk_control", "verdict", "status"].map((key) => ({ key }));

  async function forestCard(container, role, label, about, metrics, r) {
    const rows = effectRows(metrics);
    const treatments = new Set(rows.map((row) => row.variation));
    const alpha = r.alpha ?? r.experiment.alpha ?? 0.05;
    const correction = correctionText(r.correction);
    const card = chartCard(container, {
      id: `forest-${role}`, title: label, cls: "forest",
      subtitle: `${about} Each marker is a variation's relative effect against the control, with its ${fmtPct(1 - alpha)}${r.sequential ? " always-valid" : ""} interval; left of the zero line the metric fell. Green: better, red: worse (for a metric where lower is better, a fall is better), grey: inconclusive. p-values ${correction}.`,
    });
    card.section.dataset.role = role;
    const label_ = (row) => (treatments.size > 1 ? `${row.title} · ${row.variation}` : row.title);
    const shown = rows.filter((row) => isNum(row.effect));
    const unusable = metrics.filter((m) => m.error);
    if (unusable.length) {
      card.note.before(message("error", "Not analysed:", unusable.map((m) => `${m.metric}: ${m.error}`).join(" ")));
    }
    const finish = () => {
      const table = renderTable({ columns: EFFECT_COLUMNS, rows, caption: `${label}: each variation against the control` }, label);
      $$("tbody tr", table).forEach((tr, i) => {
        tr.dataset.metric = rows[i].metric;
        tr.dataset.variation = rows[i].variation;
        tr.dataset.verdict = rows[i].verdict;
        tr.classList.add(`verdict-${rows[i].verdict}`);
      });
      card.table.replaceChildren(table);
      card.rows = rows;
      card.columns = EFFECT_CSV;
    };
    if (!shown.length) {
      empty(card, "No effects to show yet.", (r.variations || []).some((v) => v.units) ? "Every comparison lacks data (see the reasons in the table)." : "No unit has been exposed yet: effects appear once units of each variation are counted.");
      finish();
      return;
    }
    const traces = [];
    for (const verdict of ["better", "worse", "inconclusive"]) {
      const these = shown.filter((row) => row.verdict === verdict);
      if (!these.length) continue;
      traces.push({
        type: "scatter", mode: "markers", name: verdict, x: these.map((row) => row.effect), y: these.map(label_),
        marker: { color: VERDICT_COLORS[verdict], size: 11, symbol: "square" },
        error_x: {
          type: "data", symmetric: false, color: VERDICT_COLORS[verdict], thickness: 2, width: 6,
          array: these.map((row) => (isNum(row.ci_high) ? row.ci_high - row.effect : 0)),
          arrayminus: these.map((row) => (isNum(row.ci_low) ? row.effect - row.ci_low : 0)),
        },
        customdata: these.map((row) => [fmtEffect(row.effect), fmtCi([row.ci_low, row.ci_high]), fmtP(row.p_value_adjusted), fmtPct(row.chance_to_win), row.inverse ? "lower is better" : "higher is better", row.variation]),
        hovertemplate: "%{y}<br>%{customdata[5]}: %{customdata[0]} (%{customdata[1]})<br>p = %{customdata[2]} · chance to win %{customdata[3]} · %{customdata[4]}<extra>%{fullData.name}</extra>",
      });
    }
    const ends = shown.flatMap((row) => [row.effect, row.ci_low, row.ci_high]).filter(isNum);
    const lo = Math.min(0, ...ends);
    const hi = Math.max(0, ...ends);
    const pad = (hi - lo || 0.1) * 0.08;
    const categories = rows.map(label_);
    await draw(card, {
      traces,
      layout: {
        hovermode: "closest", height: Math.max(180, 52 * categories.length + 110),
        legend: { orientation: "h", y: -0.3 },
        xaxis: { type: "linear", range: [lo - pad, hi + pad], tickformat: ".1~%", zeroline: false, title: { text: `relative effect against the control (${fmtPct(1 - alpha)} interval)` } },
        yaxis: { type: "category", categoryorder: "array", categoryarray: categories, autorange: "reversed", rangemode: "normal", gridcolor: "#f5f7fa" },
        shapes: [{ type: "line", xref: "x", yref: "paper", x0: 0, x1: 0, y0: 0, y1: 1, line: { color: "#1b2430", width: 1.5 } }],
      },
      rows,
      columns: EFFECT_CSV,
    });
    card.chart.setAttribute("aria-label", `Forest plot: ${label}, the relative effect of each variation with its interval; the table below has every number`);
    finish();
  }

  async function exposureCard(container, r) {
    const card = chartCard(container, {
      id: "experiment-exposures", title: "Units exposed over time", cls: "exposures",
      subtitle: "Cumulative units per variation, by the UTC day of each unit's first exposure (its first experiment.exposure event). The lines should keep the planned split.",
    });
    const variations = r.variations || [];
    const days = r.exposures || [];
    if (!days.length) {
      empty(card, "No units exposed yet.", r.experiment.status === "running"
        ? "Units are counted from their first experiment.exposure event: check that the SDK evaluates the experiment's flag (Data health shows what arrives)."
        : `The experiment is ${r.experiment.status}: \`tally experiments start ${r.experiment.key}\` starts it.`);
      return;
    }
    const totals = Object.fromEntries(variations.map((v) => [v.key, 0]));
    const rows = days.map((d) => {
      const row = { day: d.day };
      for (const v of variations) {
        totals[v.key] += d[v.key] || 0;
        row[`${v.key} new`] = d[v.key] || 0;
        row[`${v.key} total`] = totals[v.key];
      }
      return row;
    });
    const columns = [{ key: "day" }, ...variations.flatMap((v) => [
      { key: `${v.key} total`, num: true, format: fmtInt },
      { key: `${v.key} new`, num: true, format: fmtInt },
    ])];
    await draw(card, {
      traces: variations.map((v, i) => ({
        type: "scatter", mode: "lines+markers", name: v.control ? `${v.key} (control)` : v.key,
        x: rows.map((row) => row.day), y: rows.map((row) => row[`${v.key} total`]),
        line: { width: 2, color: COLORS[i % COLORS.length] }, marker: { size: 4 },
      })),
      layout: { xaxis: { type: "date", tickformat: "%b %-d" }, yaxis: { title: { text: "units exposed, cumulative" }, ...countAxis(Math.max(...Object.values(totals))) } },
      rows,
      columns,
      table: { columns, rows, caption: "Units exposed per day and variation: new, and in total" },
    });
    card.table.replaceChildren(el("details", {}, el("summary", { text: "Table" }), card.table.firstChild));
  }

  async function renderExperiment(box, r) {
    box.append(experimentHead(r));
    if (r.srm && r.srm.flagged) box.append(srmBanner(r));
    // the banner above says what the readout's own mismatch warning says, at more length
    const srmShown = r.srm && r.srm.flagged;
    const warnings = (r.warnings || []).filter((w) => w && !(srmShown && /^sample ratio mismatch/i.test(w)));
    if (warnings.length) {
      box.append(el("div", { class: "message warn", id: "experiment-warnings", role: "note" },
        el("strong", { text: warnings.length === 1 ? "Warning:" : "Warnings:" }),
        el("ul", {}, warnings.map((w) => el("li", { text: w })))));
    }
    const metrics = r.metrics || [];
    if (!metrics.length) box.append(message("empty", "This experiment has no metrics.", "Add some under `metrics:` in its definition."));
    for (const [role, label, about] of ROLES) {
      const these = metrics.filter((m) => m.role === role);
      if (these.length) await forestCard(box, role, label, about, these, r);
    }
    await exposureCard(box, r);
  }

  /** The message for an experiment the server does not know, with the way back to the list. */
  function unknownExperiment(key, error) {
    return el("div", { class: "message error", role: "alert", id: "experiment-error" },
      el("strong", { text: `No experiment “${key}”.` }), ` ${error.message} `,
      el("a", { href: "/experiments" }, "See every experiment"), " or choose one below.");
  }

  async function renderExperiments() {
    const key = value("key");
    const listPromise = api("/v1/experiments");
    const resultsPromise = key ? api(`/v1/experiments/${encodeURIComponent(key)}/results`) : null;
    listPromise.catch(() => {});
    if (resultsPromise) resultsPromise.catch(() => {});
    const box = $("#experiment");
    const list = $("#experiments-list");
    box.replaceChildren();
    list.hidden = Boolean(key);
    let experiments = [];
    let listError = null;
    try {
      experiments = experimentList(await listPromise);
    } catch (error) {
      if (!key || (error instanceof ApiError && error.status === 401)) throw error;
      listError = error;
    }
    fillSelect($("#key"), experiments.map((e) => ({ value: e.key, label: `${e.name || e.key} (${e.status})` })), { blank: "All experiments" });
    if (!key) {
      renderExperimentTable(experiments);
      return;
    }
    let results;
    try {
      results = await resultsPromise;
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) throw error;
      if (error instanceof ApiError && error.status === 404) {
        box.append(unknownExperiment(key, error));
        if (!listError) {
          list.hidden = false;
          renderExperimentTable(experiments);
        }
        return;
      }
      // The definition is known but it cannot be analysed (yet): say so under its header.
      const known = experiments.find((e) => e.key === key);
      if (known) box.append(experimentHead({ experiment: known, variations: (known.variations || []).filter((v) => typeof v === "object") }));
      box.append(el("div", { id: "experiment-error" }, errorMessage(error)));
      return;
    }
    document.title = `${results.experiment.name || key} · Experiments · Tallystick`;
    await renderExperiment(box, results);
  }

  // -- flags: what is live, per environment (the control plane's ruleset, read-only) ------------

  /** A flag value as text: strings as they are, anything else as JSON (shortened). */
  function fmtValue(v) {
    const text = typeof v === "string" ? v : JSON.stringify(v);
    return text.length > 80 ? `${text.slice(0, 77)}…` : text;
  }
  const valueCode = (v) => el("code", { class: "value", title: typeof v === "string" ? null : JSON.stringify(v) }, fmtValue(v));
  const fmtShare = (share) => `${numFormat.format(share * 100)} %`;

  /** A condition (docs/flags.md) in plain words: `email regex @example\.org$`, `segment staff`,
   * `not …`, `all of (…; …)`, `any of (…; …)`. */
  function describeCondition(c) {
    if (!c || typeof c !== "object") return String(c);
    const inner = (x) => {
      const text = describeCondition(x);
      return x && (x.and || x.or) ? `(${text})` : text;
    };
    if ("segment" in c) return `segment ${c.segment}`;
    if ("not" in c) return `not ${inner(c.not)}`;
    if ("and" in c) return c.and.length ? (c.and.length === 1 ? describeCondition(c.and[0]) : `all of (${c.and.map(describeCondition).join("; ")})`) : "always";
    if ("or" in c) return c.or.length ? (c.or.length === 1 ? describeCondition(c.or[0]) : `any of (${c.or.map(describeCondition).join("; ")})`) : "never";
    if (c.op === "exists") return `${c.attribute} ${c.value === false ? "is missing" : "exists"}`;
    const v = Array.isArray(c.value) ? `[${c.value.map(fmtValue).join(", ")}]` : fmtValue(c.value);
    return `${c.attribute} ${c.op} ${v}`;
  }

  /** The segments a condition refers to, itself or through others. */
  function segmentsOf(c, out = new Set()) {
    if (!c || typeof c !== "object") return out;
    if ("segment" in c) out.add(c.segment);
    if ("not" in c) segmentsOf(c.not, out);
    for (const x of c.and || c.or || []) segmentsOf(x, out);
    return out;
  }

  /** The state of a flag in one environment: [kind, badge text, what it means]. */
  function flagState(flag, env) {
    const setup = (flag.environments || {})[env];
    if (flag.killed) return ["killed", "killed: serves its default to everyone", "The kill switch is on: every environment serves the default, whatever the rules say."];
    if (!setup) return ["off", `not set up in ${env}`, `No rules in ${env}: everyone gets the default.`];
    if (setup.enabled === false) return ["disabled", `disabled in ${env}`, `Disabled in ${env}: everyone there gets the default.`];
    if (!(setup.rules || []).some((r) => r.enabled !== false)) return ["off", `no rules in ${env}`, "Everyone gets the default."];
    return ["on", `on in ${env}`, null];
  }

  /** What a rule serves: a value, a rollout, or an experiment (linked when it is defined). */
  function ruleServes(rule, flag, key, experiments) {
    if (rule.experiment) {
      const x = rule.experiment;
      const xkey = x.key || key;
      const variations = x.variations || [];
      const weights = x.weights || variations.map(() => 1 / variations.length);
      const known = experiments.get(xkey);
      const split = variations.map((v, i) => {
        const name = v.key === undefined ? String(i) : String(v.key);
        const shown = fmtValue(v.value) === name ? "" : ` (${fmtValue(v.value)})`;
        return `${name}${shown} ${fmtShare(weights[i] ?? 0)}`;
      }).join(" / ");
      const extra = [`coverage ${fmtShare(x.coverage ?? 1)}`];
      if (x.namespace) extra.push(`namespace ${x.namespace.id} [${x.namespace.range.join(", ")})`);
      if (x.hash_attribute && x.hash_attribute !== "id") extra.push(`hashed on ${x.hash_attribute}`);
      const name = known ? el("a", { href: experimentHref(xkey), class: "experiment-link" }, `experiment ${xkey}`) : `experiment ${xkey}`;
      return el("span", { class: "serves" }, name, `: ${split}, ${extra.join(", ")}`,
        known ? el("span", {}, " ", badge(known.status, `status-${known.status}`)) : null);
    }
    if (rule.rollout) {
      const r = rule.rollout;
      const how = r.hash_attribute && r.hash_attribute !== "id" ? ` (hashed on ${r.hash_attribute})` : "";
      return el("span", { class: "serves" }, `rollout ${fmtShare(r.coverage)}${how}: `, valueCode(rule.value), " (the others: the next rule)");
    }
    return el("span", { class: "serves" }, "serves ", valueCode(rule.value));
  }

  function flagCard(key, flag, env, experiments) {
    const [kind, label, meaning] = flagState(flag, env);
    const setup = (flag.environments || {})[env] || {};
    const rules = setup.rules || [];
    const list = el("ol", { class: "rules" }, rules.map((rule, i) => {
      const off = rule.enabled === false;
      const item = el("li", { class: off ? "rule skipped" : "rule", dataset: { rule: rule.id ?? String(i) } },
        el("code", { class: "rule-id", text: rule.id ?? String(i) }), " ",
        el("span", { class: "when" }, rule.condition ? `if ${describeCondition(rule.condition)}` : "everyone"),
        " → ", ruleServes(rule, flag, key, experiments),
        off ? el("small", { class: "desc", text: "this rule is disabled: skipped" }) : null);
      return item;
    }));
    const fallback = el("p", { class: "fallback" }, rules.length ? "Otherwise: " : "Everyone: ", "the default, ", valueCode(flag.default), ".");
    const card = el("article", { class: `card flag flag-${kind}`, dataset: { flag: key, state: kind }, "aria-labelledby": `flag-${slug(key)}` },
      el("div", { class: "card-head" },
        el("h3", { id: `flag-${slug(key)}` }, el("code", { text: key })),
        el("span", {}, el("span", { class: "tag", text: flag.type }), " ", badge(label, `flag-state state-${kind}`))),
      flag.description ? el("p", { class: "card-sub", text: flag.description }) : null,
      el("p", { class: "flag-default" }, "Default: ", el("span", { class: "default" }, valueCode(flag.default))),
      meaning ? el("p", { class: `state-note ${kind}`, text: meaning }) : null,
      kind === "on" || rules.length ? el("div", {}, el("h4", { class: "rules-title", text: `Rules in ${env}, in order: the first that applies gives the value` }), list, fallback) : null);
    return card;
  }

  function renderSegments(segments, flags, env) {
    const ids = Object.keys(segments).sort();
    if (!ids.length) {
      $("#segments").replaceChildren(message("empty", "No saved segments.", "Define them under `segments:` in the ruleset; a condition refers to one as {\"segment\": ID}."));
      return;
    }
    const users = new Map(ids.map((id) => [id, []]));
    for (const [key, flag] of Object.entries(flags)) {
      const rules = ((flag.environments || {})[env] || {}).rules || [];
      const used = new Set();
      for (const rule of rules) segmentsOf(rule.condition, used);
      // a segment used by another one is used by its flags too
      for (let grew = true; grew;) {
        grew = false;
        for (const id of [...used]) {
          for (const more of segmentsOf(segments[id])) {
            if (!used.has(more)) { used.add(more); grew = true; }
          }
        }
      }
      for (const id of used) if (users.has(id)) users.get(id).push(key);
    }
    const rows = ids.map((id) => ({ segment: id, condition: describeCondition(segments[id]), used_by: users.get(id) }));
    const columns = [
      { key: "segment", format: (v) => el("code", { text: v }) },
      { key: "condition", format: (v) => el("code", { text: v }) },
      { key: "used_by", label: `used in ${env} by`, format: (v) => (v.length ? el("span", {}, v.flatMap((k, i) => [i ? " " : "", el("code", { class: "tag", text: k })])) : "no flag") },
    ];
    const table = renderTable({ columns, rows, caption: "Saved segments: conditions that rules refer to by name" }, "Segments");
    $$("tbody tr", table).forEach((tr, i) => { tr.dataset.segment = rows[i].segment; });
    $("#segments").replaceChildren(table);
  }

  async function renderFlags() {
    const overviewPromise = api("/v1/flags");
    const experimentsPromise = api("/v1/experiments");
    experimentsPromise.catch(() => {});
    const body = await overviewPromise;
    let experiments = new Map();
    try {
      experiments = new Map(experimentList(await experimentsPromise).map((e) => [e.key, e]));
    } catch (error) {
      if (error instanceof ApiError && error.status === 401) throw error;
      // without the experiments, their rules are shown unlinked
    }
    const ruleset = body.ruleset || {};
    const flags = ruleset.flags || {};
    const envs = ruleset.environments || [];
    const select = $("#environment");
    const asked = value("environment");
    const env = asked || (envs.includes("prod") ? "prod" : envs[0] || "");
    if (!select.dataset.filled) select.dataset.selected = env;
    fillSelect(select, envs.map((e) => ({ value: e })));
    const stored = (body.environments || []).find((e) => e.environment === env);
    const version = $("#flags-version");
    version.dataset.value = stored ? String(stored.version) : "0";
    version.replaceChildren(...(stored ? [`The ${env} ruleset: version ${stored.version}, changed `,
      el("time", { datetime: stored.updated_at }, fmtTime(stored.updated_at)), ` (${fmtAgo(stored.updated_at)})`,
      stored.updated_by ? ` by ${stored.updated_by}` : "", ". SDKs fetch it from GET /v1/flags/ruleset?environment=", env, "."] : []));
    const keys = Object.keys(flags).sort();
    const count = $("#flags-count");
    const box = $("#flags");
    if (!keys.length) {
      count.dataset.value = "0";
      count.textContent = "";
      box.replaceChildren(message("empty", "No flags yet:", "`tally flags apply FILE` defines them (see docs/flags.md), or PUT /v1/admin/flags; starting an experiment (`tally experiments start KEY`) creates its flag."));
      renderSegments(ruleset.segments || {}, flags, env);
      return;
    }
    if (!envs.includes(env)) {
      count.dataset.value = "0";
      count.textContent = "";
      box.replaceChildren(message("error", `No environment “${env}”.`, `The ruleset's environments are ${envs.join(", ")}: choose one above.`));
      $("#segments").replaceChildren();
      return;
    }
    const q = value("q").toLowerCase();
    const matches = keys.filter((k) => !q || `${k} ${flags[k].description || ""}`.toLowerCase().includes(q));
    const states = matches.map((k) => flagState(flags[k], env)[0]);
    const killed = states.filter((s) => s === "killed").length;
    const on = states.filter((s) => s === "on").length;
    count.dataset.value = String(matches.length);
    count.textContent = `${matches.length} of ${plural(keys.length, "flag")}${q ? ` match “${q}”` : ""} · ${on} on in ${env}${killed ? ` · ${killed} killed` : ""}`;
    box.replaceChildren(...(matches.length ? matches.map((k) => flagCard(k, flags[k], env, experiments))
      : [message("empty", `No flag matches “${q}”.`, "Clear the filter, or try part of a key or a word of a description.")]));
    renderSegments(ruleset.segments || {}, flags, env);
  }

  // -- wiring ----------------------------------------------------------------------------------

  const RENDER = {
    kpis: renderKpis,
    "core-actions": renderCoreActions,
    funnel: renderFunnel,
    retention: renderRetention,
    explore: renderExplore,
    experiments: renderExperiments,
    flags: renderFlags,
    "data-health": renderHealth,
    catalog: renderCatalog,
    streams: renderStreams,
  };
  const SETUP = { funnel: setupFunnel, retention: setupRetention, explore: setupExplore };

  function showAsOf(m) {
    const node = $("#as-of");
    if (!m.data_as_of) {
      node.textContent = "No events received yet";
      return;
    }
    const ago = (Date.now() - new Date(m.data_as_of).getTime()) / 1000;
    node.replaceChildren("Data as of ", el("time", { datetime: m.data_as_of, id: "data-as-of" }, fmtTime(m.data_as_of)), ` (${fmtAgo(m.data_as_of)})`);
    node.classList.toggle("stale", ago > 86400);
  }

  let generation = 0;
  async function refresh(changed) {
    const mine = ++generation;
    document.body.dataset.state = "loading";
    setStatus(null);
    // The page's own queries start at once; /v1/meta (pickers, "data as of") runs beside them.
    const metaReady = meta().then((m) => {
      pageMeta = m;
      showAsOf(m);
      return m;
    });
    metaReady.catch(() => {});
    try {
      const range = await dateRange();
      if (range.from > range.to) {
        setStatus(message("error", "The dates are the wrong way round:", `“from” (${range.from}) is after “to” (${range.to}).`));
        document.body.dataset.state = "error";
        return;
      }
      await RENDER[page]({ meta: metaReady, range }, changed);
      await metaReady;
      if (mine === generation) document.body.dataset.state = "ready";
    } catch (error) {
      if (mine !== generation) return;
      if (error instanceof ApiError && error.status === 401) {
        setStatus(message("empty", "This server needs a read key.", "Signing in…"));
        document.body.dataset.state = "locked";
        return;
      }
      setStatus(errorMessage(error));
      document.body.dataset.state = "error";
    }
  }

  /** A control a catalog definition also sets was changed: the view is no longer that metric. */
  const DEFINED = new Set(["step", "window", "unit", "where", "cohort_event", "return_events", "periods"]);
  function customised(name) {
    if (DEFINED.has(name) && $("#metric") && (page === "funnel" || page === "retention")) {
      $("#metric").value = "";
    }
  }

  function applyView(changed) {
    syncUrl(false);
    refresh(changed);
  }

  async function start() {
    if (!form) return;
    form.addEventListener("submit", (event) => {
      event.preventDefault();
      applyView();
    });
    form.addEventListener("change", (event) => {
      const name = event.target.name;
      if (name === "from" || name === "to") $("#range").value = "custom";
      customised(name);
      applyView(name);
    });
    window.addEventListener("popstate", () => window.location.reload());
    if ($("#step-rows")) {
      repeatable($("#step-rows"), $("#add-step"), (i) => stepRow(i, "", pageMeta ? eventOptions(pageMeta) : []), 2);
    }
    if ($("#filter-rows")) repeatable($("#filter-rows"), $("#add-filter"), (i) => filterRow(i));
    if (SETUP[page]) {
      meta().then((m) => {
        pageMeta = m;
        SETUP[page](m);
      }).catch(() => { /* refresh() shows the error */ });
    }
    await refresh();
  }

  start();
})();
