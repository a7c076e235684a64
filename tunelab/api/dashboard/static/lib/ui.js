// Building blocks shared by the pages: paged tables, status badges, charts, forms.
import * as echarts from "echarts";
import { html, useEffect, useRef, useState, useCallback } from "./html.js";
import { api } from "./api.js";
import { lang, t } from "./i18n.js";

export const FONT =
  'system-ui, -apple-system, "Segoe UI", Roboto, "Noto Sans", "Noto Sans CJK SC", ' +
  '"PingFang SC", "Hiragino Sans GB", "Microsoft YaHei", sans-serif';

// ---------------------------------------------------------------- formatting

export function fmtTime(seconds) {
  if (!seconds) return "—";
  return new Date(seconds * 1000).toLocaleString(lang() === "zh" ? "zh-CN" : "en-GB", {
    dateStyle: "medium",
    timeStyle: "short",
  });
}

export function fmtDuration(seconds) {
  if (seconds === null || seconds === undefined || !isFinite(seconds)) return "—";
  const s = Math.max(0, Math.round(seconds));
  if (s < 60) return t("duration.s", { n: s });
  if (s < 3600) return t("duration.m", { m: Math.floor(s / 60), s: s % 60 });
  return t("duration.h", { h: Math.floor(s / 3600), m: Math.floor((s % 3600) / 60) });
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return "—";
  const units = ["B", "KB", "MB", "GB"];
  let i = 0;
  while (n >= 1024 && i < units.length - 1) {
    n /= 1024;
    i += 1;
  }
  return `${i ? n.toFixed(1) : n} ${units[i]}`;
}

export function fmtNumber(n, digits = 0) {
  if (n === null || n === undefined) return "—";
  return Number(n).toLocaleString(lang() === "zh" ? "zh-CN" : "en-US", {
    maximumFractionDigits: digits,
  });
}

// ---------------------------------------------------------------- small parts

export function Status({ status }) {
  return html`<span class="status status-${status}" data-status=${status}
    >${t(`status.${status}`, {}, status)}</span
  >`;
}

export function ErrorBox({ error }) {
  if (!error) return null;
  return html`<div class="error" role="alert" data-testid="error">
    ${error.message || String(error)}
    ${error.param ? html` <code>${error.param}</code>` : null}
  </div>`;
}

export function Progress({ value, label }) {
  const pct = Math.max(0, Math.min(1, value || 0)) * 100;
  return html`<div class="progress" title=${label || ""}>
    <div class="bar" style=${`width: ${pct.toFixed(1)}%`}></div>
    ${label ? html`<span>${label}</span>` : null}
  </div>`;
}

export function Section({ title, actions, children, testid }) {
  return html`<section class="card" data-testid=${testid}>
    <header>
      <h2>${title}</h2>
      ${actions ? html`<div class="actions">${actions}</div>` : null}
    </header>
    ${children}
  </section>`;
}

export function Empty({ children }) {
  return html`<p class="empty">${children}</p>`;
}

/** An API that this server does not have yet (evals, batches before they land). */
export function Unavailable({ what }) {
  return html`<div class="notice" data-testid="unavailable">
    ${t("unavailable", { what })}
  </div>`;
}

// ---------------------------------------------------------------- hooks

/** Call `fn` now and every `ms` while `active`; the latest `fn` is always used. */
export function useInterval(fn, ms, active = true) {
  const saved = useRef(fn);
  saved.current = fn;
  useEffect(() => {
    if (!active) return undefined;
    const id = setInterval(() => saved.current(), ms);
    return () => clearInterval(id);
  }, [ms, active]);
}

/**
 * A cursor-paged OpenAI list (`{data, has_more, last_id}`): `load(after)` fetches one
 * page. Keeps the cursors of the pages before, so the user can page back and forth
 * through any number of items while only one page is ever held.
 */
export function usePaged(load, deps = []) {
  // The cursors restart at the first page whenever `deps` (a filter) change.
  const depKey = JSON.stringify(deps);
  const [state, setState] = useState({ depKey, cursors: [null] });
  const cursors = state.depKey === depKey ? state.cursors : [null];
  const setCursors = (next) => setState({ depKey, cursors: next });
  const [page, setPage] = useState(null);
  const [error, setError] = useState(null);
  const index = cursors.length - 1;
  const after = cursors[index];
  const reload = useCallback(async () => {
    try {
      const result = await load(after);
      setPage(result);
      setError(null);
    } catch (e) {
      setError(e);
    }
  }, [depKey, after, index]);
  useEffect(() => {
    reload();
  }, [reload]);
  return {
    page,
    error,
    reload,
    number: index + 1,
    next: page?.has_more ? () => setCursors([...cursors, page.last_id]) : null,
    prev: index > 0 ? () => setCursors(cursors.slice(0, -1)) : null,
  };
}

export function Pager({ paged }) {
  return html`<nav class="pager" data-testid="pager">
    <button onClick=${paged.prev} disabled=${!paged.prev} data-testid="prev">
      ← ${t("pager.prev")}
    </button>
    <span data-testid="page-number">${t("pager.page", { n: paged.number })}</span>
    <button onClick=${paged.next} disabled=${!paged.next} data-testid="next">
      ${t("pager.next")} →
    </button>
  </nav>`;
}

// ---------------------------------------------------------------- charts

/** An Apache ECharts chart; `option` is re-applied whenever it changes. */
export function Chart({ option, height = 260, testid }) {
  const node = useRef(null);
  const chart = useRef(null);
  useEffect(() => {
    chart.current = echarts.init(node.current, null, {
      renderer: "canvas",
      locale: lang() === "zh" ? "ZH" : "EN",
    });
    const observer = new ResizeObserver(() => chart.current && chart.current.resize());
    observer.observe(node.current);
    return () => {
      observer.disconnect();
      chart.current.dispose();
      chart.current = null;
    };
  }, []);
  useEffect(() => {
    chart.current.setOption(
      { textStyle: { fontFamily: FONT }, animation: false, ...option },
      { notMerge: true },
    );
  }, [option]);
  return html`<div class="chart" ref=${node} style=${`height: ${height}px`} data-testid=${testid}
  ></div>`;
}

// ---------------------------------------------------------------- models

/** Models of the signed-in project with their kind ("chat" / "embedding"). */
export function useModels() {
  const [models, setModels] = useState(null);
  useEffect(() => {
    api("/v1/dashboard/models").then(
      (r) => setModels(r.data),
      () => setModels([]),
    );
  }, []);
  return models;
}

export function ModelSelect({ models, value, onChange, kind = "chat", filter, testid }) {
  const shown = (models || []).filter((m) => m.kind === kind && (!filter || filter(m)));
  const bases = shown.filter((m) => m.fine_tune === "base");
  const tuned = shown.filter((m) => m.fine_tune !== "base");
  const known = shown.some((m) => m.id === value);
  return html`<select
    value=${value}
    onChange=${(e) => onChange(e.target.value)}
    data-testid=${testid}
  >
    ${!known && value ? html`<option value=${value}>${value}</option>` : null}
    <optgroup label=${t("models.base")}>
      ${bases.map((m) => html`<option value=${m.id}>${m.id}</option>`)}
    </optgroup>
    ${tuned.length
      ? html`<optgroup label=${t("models.tuned")}>
          ${tuned.map((m) => html`<option value=${m.id}>${m.id}</option>`)}
        </optgroup>`
      : null}
  </select>`;
}
