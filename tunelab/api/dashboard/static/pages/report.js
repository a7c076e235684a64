// A fine-tuning file's report, from /v1/dashboard/files/{id}/report: the validator's
// verdict with the lines it refused, token statistics with the time estimate, and
// the first examples as the model sees them, trained tokens highlighted.
import { html, useEffect, useState } from "../lib/html.js";
import { api } from "../lib/api.js";
import { t } from "../lib/i18n.js";
import { ErrorBox, fmtDuration, fmtNumber } from "../lib/ui.js";

export function useReport(fileId, model) {
  const [state, setState] = useState({ report: null, error: null, loading: false });
  useEffect(() => {
    if (!fileId || !model) {
      setState({ report: null, error: null, loading: false });
      return undefined;
    }
    let live = true;
    setState({ report: null, error: null, loading: true });
    api(`/v1/dashboard/files/${fileId}/report`, { query: { model, preview: 3 } }).then(
      (report) => live && setState({ report, error: null, loading: false }),
      (error) => live && setState({ report: null, error, loading: false }),
    );
    return () => {
      live = false;
    };
  }, [fileId, model]);
  return state;
}

function Verdict({ v }) {
  if (v.ok && !v.too_few) {
    return html`<p class="ok" data-testid="verdict" data-ok="true">
      ✓ ${t("report.ok", { n: v.n_examples, format: t(`format.${v.format}`, {}, v.format) })}
    </p>`;
  }
  return html`<div class="error" data-testid="verdict" data-ok="false">
    ${v.too_few ? v.summary : t("report.problems", { n: v.problem_count, lines: v.n_lines })}
  </div>`;
}

function Problems({ v }) {
  if (!v.problems.length) return null;
  return html`<table class="list problems" data-testid="problems">
    <thead>
      <tr>
        <th>${t("report.line")}</th>
        <th>${t("report.message_index")}</th>
        <th>${t("report.field")}</th>
        <th>${t("report.problem")}</th>
      </tr>
    </thead>
    <tbody>
      ${v.problems.map(
        (p) => html`<tr data-testid="problem" data-line=${p.line}>
          <td>${p.line ?? "—"}</td>
          <td>${p.message_index ?? "—"}</td>
          <td>${p.field ? html`<code>${p.field}</code>` : "—"}</td>
          <td>${p.message}</td>
        </tr>`,
      )}
    </tbody>
    ${v.problem_count > v.problems.length
      ? html`<caption>${t("report.more", { n: v.problem_count - v.problems.length })}</caption>`
      : null}
  </table>`;
}

function Stats({ s, model, epochs }) {
  const spread = (x) => (x ? `${x.min} / ${x.mean} / ${x.p90} / ${x.max}` : "—");
  const rows = [
    [t("report.examples"), fmtNumber(s.n_examples)],
    [t("report.tokens"), spread(s.tokens_per_example)],
    [t("report.messages"), spread(s.messages_per_example)],
    [t("report.trained"), `${fmtNumber(s.trained_tokens)} / ${fmtNumber(s.total_tokens)}`],
    [t("report.truncated"), `${fmtNumber(s.n_truncated)} (${t("report.context", { n: s.context })})`],
    [t("report.epochs"), s.n_epochs],
    [t("report.billed"), fmtNumber(s.billed_tokens)],
    [
      t("report.time"),
      html`<b data-testid="estimate">${fmtDuration(s.estimated_seconds)}</b>
        <span class="muted small"> ${t("report.rate", { n: s.tokens_per_second, model })}</span>`,
    ],
  ];
  // The estimate is for the `auto` epochs; a job with its own n_epochs scales it.
  if (epochs && epochs !== s.n_epochs) {
    rows.push([
      t("report.time_for", { n: epochs }),
      html`<b data-testid="estimate-chosen">${fmtDuration((s.estimated_seconds / s.n_epochs) * epochs)}</b>`,
    ]);
  }
  return html`<dl class="facts" data-testid="stats">
    ${rows.map(([k, v]) => html`<dt>${k}</dt><dd>${v}</dd>`)}
    ${s.sampled < s.n_examples
      ? html`<dd class="muted small">${t("report.sampled", { n: s.sampled })}</dd>`
      : null}
  </dl>`;
}

function Preview({ examples }) {
  if (!examples.length) return null;
  return html`<div data-testid="preview">
    <p class="muted small">${t("report.legend")} <mark class="trained">${t("report.trained_mark")}</mark></p>
    ${examples.map(
      (ex) => html`<figure class="example" data-testid="example">
        <figcaption>${t("report.line")} ${ex.line}</figcaption>
        <pre>${ex.segments.map((s) =>
          s.trained ? html`<mark class="trained">${s.text}</mark>` : s.text,
        )}</pre>
      </figure>`,
    )}
  </div>`;
}

export function Report({ fileId, model }) {
  return html`<${ReportView} state=${useReport(fileId, model)} />`;
}

/** The report of a `useReport` state. */
export function ReportView({ state, epochs }) {
  const { report, error, loading } = state;
  if (loading) return html`<p class="muted" data-testid="report-loading">${t("report.loading")}</p>`;
  if (error) return html`<${ErrorBox} error=${error} />`;
  if (!report) return null;
  const v = report.validation;
  return html`<div class="report" data-testid="report">
    <${Verdict} v=${v} />
    <${Problems} v=${v} />
    ${report.stats
      ? html`<h3>${t("report.stats", { model: report.model })}</h3>
          <${Stats} s=${report.stats} model=${report.model} epochs=${epochs} />`
      : null}
    ${report.preview.length
      ? html`<h3>${t("report.preview")}</h3>
          <${Preview} examples=${report.preview} />`
      : null}
  </div>`;
}
