// Evals (OpenAI's Evals API, contract §15): the evals, their runs, pass rates per
// criterion and per model, and each item with the model's output and the verdicts.
// An eval run's report_url opens this page at /dashboard/evals/{eval_id}?run_id=….
import { html, useEffect, useMemo, useState } from "../lib/html.js";
import { api, hasApi } from "../lib/api.js";
import { t } from "../lib/i18n.js";
import {
  Chart,
  ErrorBox,
  Empty,
  Pager,
  Section,
  Status,
  Unavailable,
  fmtNumber,
  fmtTime,
  useInterval,
  usePaged,
} from "../lib/ui.js";

const RUNNING = ["queued", "in_progress"];
const pct = (part, total) => (total ? `${((100 * part) / total).toFixed(1)}%` : "—");

export function EvalsPage() {
  if (!hasApi("evals")) return html`<${Unavailable} what=${t("nav.evals")} />`;
  return html`<${EvalList} />`;
}

function EvalList() {
  const paged = usePaged((after) => api("/v1/evals", { query: { limit: 20, after, order: "desc" } }));
  const evals = paged.page?.data || [];
  return html`<${Section} title=${t("evals.title")} testid="evals">
    <${ErrorBox} error=${paged.error} />
    ${paged.page && !evals.length ? html`<${Empty}>${t("evals.empty")}</${Empty}>` : null}
    ${evals.length
      ? html`<table class="list" data-testid="evals-table">
          <thead><tr><th>${t("evals.name")}</th><th>${t("files.id")}</th><th>${t("evals.criteria")}</th><th>${t("jobs.created")}</th></tr></thead>
          <tbody>
            ${evals.map(
              (e) => html`<tr data-testid="eval-row">
                <td><a href=${`evals/${e.id}`}>${e.name || e.id}</a></td>
                <td><code class="small">${e.id}</code></td>
                <td>${(e.testing_criteria || []).map((c) => c.name).join(", ")}</td>
                <td>${fmtTime(e.created_at)}</td>
              </tr>`,
            )}
          </tbody>
        </table>`
      : null}
    <${Pager} paged=${paged} />
  </${Section}>`;
}

function criterionName(evalObj, id) {
  const found = (evalObj.testing_criteria || []).find((c) => c.id === id);
  return found?.name || id.replace(/-[0-9a-f-]{36}$/i, "");
}

function perModelOption(runs) {
  const done = runs.filter((r) => r.result_counts?.total);
  const labels = done.map((r) => `${r.model || "—"}\n${r.name || r.id}`);
  return {
    tooltip: { trigger: "axis", valueFormatter: (v) => `${v}%` },
    grid: { left: 48, right: 16, top: 16, bottom: 64 },
    xAxis: { type: "category", data: labels, axisLabel: { interval: 0 } },
    yAxis: { type: "value", max: 100, name: "%" },
    series: [
      {
        type: "bar",
        name: t("evals.passrate"),
        data: done.map((r) => Number(((100 * r.result_counts.passed) / r.result_counts.total).toFixed(1))),
        label: { show: true, position: "top", formatter: "{c}%" },
      },
    ],
  };
}

function perCriterionOption(evalObj, run) {
  const rows = run.per_testing_criteria_results || [];
  const names = rows.map((r) => criterionName(evalObj, r.testing_criteria));
  return {
    tooltip: { trigger: "axis" },
    legend: { top: 0 },
    grid: { left: 140, right: 24, top: 32, bottom: 24 },
    xAxis: { type: "value", minInterval: 1 },
    yAxis: { type: "category", data: names },
    series: [
      { type: "bar", stack: "n", name: t("evals.passed"), data: rows.map((r) => r.passed), color: "#2e7d32" },
      { type: "bar", stack: "n", name: t("evals.failed"), data: rows.map((r) => r.failed), color: "#c62828" },
    ],
  };
}

function outputText(item) {
  const out = item.sample?.output || [];
  return out.map((m) => (typeof m.content === "string" ? m.content : JSON.stringify(m.content))).join("\n");
}

function Items({ evalId, run }) {
  const [status, setStatus] = useState("");
  const paged = usePaged(
    (after) => api(`/v1/evals/${evalId}/runs/${run.id}/output_items`, { query: { limit: 20, after, status } }),
    [run.id, status, run.status],
  );
  const items = paged.page?.data || [];
  return html`<div>
    <label class="inline">${t("evals.show")}
      <select value=${status} onChange=${(e) => setStatus(e.target.value)}>
        <option value="">${t("files.all")}</option>
        <option value="pass">${t("evals.passed")}</option>
        <option value="fail">${t("evals.failed")}</option>
      </select></label>
    <${ErrorBox} error=${paged.error} />
    ${paged.page && !items.length ? html`<${Empty}>${t("evals.noitems")}</${Empty}>` : null}
    ${items.length
      ? html`<table class="list items" data-testid="eval-items">
          <thead><tr><th>#</th><th>${t("evals.item")}</th><th>${t("evals.output")}</th><th>${t("evals.verdicts")}</th></tr></thead>
          <tbody>
            ${items.map(
              (it) => html`<tr data-testid="eval-item" data-status=${it.status}>
                <td>${it.datasource_item_id}</td>
                <td><pre class="small">${JSON.stringify(it.datasource_item, null, 1)}</pre></td>
                <td><pre class="small">${outputText(it)}</pre></td>
                <td>
                  ${(it.results || []).map(
                    (r) => html`<div class=${r.passed ? "ok" : "error-text"}>
                      ${r.passed ? "✓" : "✗"} ${r.name} <span class="muted">${fmtNumber(r.score, 3)}</span>
                    </div>`,
                  )}
                </td>
              </tr>`,
            )}
          </tbody>
        </table>`
      : null}
    <${Pager} paged=${paged} />
  </div>`;
}

function Run({ evalObj, run }) {
  const c = run.result_counts || { total: 0, passed: 0, failed: 0, errored: 0 };
  const option = useMemo(() => perCriterionOption(evalObj, run), [run]);
  return html`<div data-testid="run" data-status=${run.status}>
    <p class="row">
      <${Status} status=${run.status} />
      <span>${t("evals.model")}: <b>${run.model || "—"}</b></span>
      <span data-testid="pass-rate">${t("evals.summary", { passed: c.passed, total: c.total, rate: pct(c.passed, c.total) })}</span>
      <span class="muted">${t("evals.errored", { n: c.errored })}</span>
    </p>
    ${run.error?.message ? html`<div class="error">${run.error.message}</div>` : null}
    ${(run.per_testing_criteria_results || []).length
      ? html`<figure data-testid="per-criterion"><figcaption>${t("evals.percriterion")}</figcaption>
          <${Chart} option=${option} height=${80 + 40 * run.per_testing_criteria_results.length} /></figure>`
      : null}
    ${(run.per_model_usage || []).length
      ? html`<table class="list"><thead><tr><th>${t("evals.model")}</th><th>${t("evals.calls")}</th><th>${t("evals.tokens")}</th></tr></thead>
          <tbody>${run.per_model_usage.map((u) => html`<tr><td>${u.model_name}</td><td>${u.invocation_count}</td><td>${fmtNumber(u.total_tokens)}</td></tr>`)}</tbody></table>`
      : null}
    <h3>${t("evals.items")}</h3>
    <${Items} evalId=${evalObj.id} run=${run} />
  </div>`;
}

export function EvalPage({ id, runId }) {
  if (!hasApi("evals")) return html`<${Unavailable} what=${t("nav.evals")} />`;
  return html`<${EvalView} id=${id} runId=${runId} />`;
}

function EvalView({ id, runId }) {
  const [evalObj, setEval] = useState(null);
  const [runs, setRuns] = useState(null);
  const [error, setError] = useState(null);
  const load = () =>
    Promise.all([api(`/v1/evals/${id}`), api(`/v1/evals/${id}/runs`, { query: { limit: 100, order: "desc" } })]).then(
      ([e, r]) => {
        setEval(e);
        setRuns(r.data);
        setError(null);
      },
      setError,
    );
  useEffect(() => {
    load();
  }, [id]);
  useInterval(load, 2000, (runs || []).some((r) => RUNNING.includes(r.status)));
  const perModel = useMemo(() => runs && perModelOption(runs), [runs]);
  if (error) return html`<${ErrorBox} error=${error} />`;
  if (!evalObj || !runs) return null;
  const run = runs.find((r) => r.id === runId) || runs[0];
  return html`<div data-testid="eval">
    <${Section} title=${html`${evalObj.name || evalObj.id} <code class="small">${evalObj.id}</code>`}>
      ${runs.length
        ? html`<table class="list" data-testid="runs">
            <thead><tr><th>${t("evals.run")}</th><th>${t("evals.model")}</th><th>${t("files.status")}</th><th>${t("evals.passrate")}</th><th>${t("jobs.created")}</th></tr></thead>
            <tbody>
              ${runs.map(
                (r) => html`<tr class=${r.id === run?.id ? "selected" : ""} data-testid="run-row">
                  <td><a href=${`evals/${id}?run_id=${r.id}`}>${r.name || r.id}</a></td>
                  <td>${r.model || "—"}</td>
                  <td><${Status} status=${r.status} /></td>
                  <td>${pct(r.result_counts?.passed || 0, r.result_counts?.total || 0)}</td>
                  <td>${fmtTime(r.created_at)}</td>
                </tr>`,
              )}
            </tbody>
          </table>
          <figure data-testid="per-model"><figcaption>${t("evals.permodel")}</figcaption><${Chart} option=${perModel} height=${240} /></figure>`
        : html`<${Empty}>${t("evals.noruns")}</${Empty}>`}
    </${Section}>
    ${run
      ? html`<${Section} title=${t("evals.runtitle", { name: run.name || run.id })} testid="run-section">
          <${Run} evalObj=${evalObj} run=${run} key=${run.id} />
        </${Section}>`
      : null}
  </div>`;
}
