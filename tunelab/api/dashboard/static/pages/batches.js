// Batches (OpenAI's Batch API, contract §12): status and request counts of each
// batch, its output and error files to download, and cancel.
import { html, useState } from "../lib/html.js";
import { api, hasApi, download } from "../lib/api.js";
import { t } from "../lib/i18n.js";
import {
  ErrorBox,
  Empty,
  Pager,
  Progress,
  Section,
  Status,
  Unavailable,
  fmtTime,
  useInterval,
  usePaged,
} from "../lib/ui.js";

const TERMINAL = ["completed", "failed", "expired", "cancelled"];

export function BatchesPage() {
  if (!hasApi("batches")) return html`<${Unavailable} what=${t("nav.batches")} />`;
  return html`<${BatchList} />`;
}

function BatchList() {
  const [error, setError] = useState(null);
  const paged = usePaged((after) => api("/v1/batches", { query: { limit: 20, after } }));
  const batches = paged.page?.data || [];
  useInterval(paged.reload, 3000, batches.some((b) => !TERMINAL.includes(b.status)));
  async function cancel(id) {
    try {
      await api(`/v1/batches/${id}/cancel`, { method: "POST" });
      paged.reload();
    } catch (e) {
      setError(e);
    }
  }
  const fetchFile = (id, name) => download(id, name).catch(setError);
  return html`<${Section} title=${t("batches.title")} testid="batches">
    <${ErrorBox} error=${error || paged.error} />
    ${paged.page && !batches.length ? html`<${Empty}>${t("batches.empty")}</${Empty}>` : null}
    ${batches.length
      ? html`<table class="list" data-testid="batches-table">
          <thead><tr>
            <th>${t("files.id")}</th><th>${t("batches.endpoint")}</th><th>${t("files.status")}</th>
            <th>${t("batches.counts")}</th><th>${t("jobs.created")}</th><th>${t("batches.files")}</th><th></th>
          </tr></thead>
          <tbody>
            ${batches.map((b) => {
              const c = b.request_counts || { total: 0, completed: 0, failed: 0 };
              return html`<tr data-testid="batch-row" data-status=${b.status}>
                <td><code class="small">${b.id}</code>${b.model ? html`<div class="muted small">${b.model}</div>` : null}</td>
                <td>${b.endpoint}</td>
                <td><${Status} status=${b.status} />
                  ${(b.errors?.data || []).slice(0, 3).map((e) => html`<div class="error-text small">${e.line ? `#${e.line}: ` : ""}${e.message}</div>`)}
                </td>
                <td>
                  <${Progress} value=${c.total ? (c.completed + c.failed) / c.total : 0}
                    label=${t("batches.countlabel", c)} />
                </td>
                <td>${fmtTime(b.created_at)}</td>
                <td>
                  ${b.output_file_id
                    ? html`<button class="link" data-testid="batch-output" onClick=${() => fetchFile(b.output_file_id, `${b.id}-output.jsonl`)}>${t("batches.output")}</button>`
                    : null}
                  ${b.error_file_id
                    ? html` <button class="link" onClick=${() => fetchFile(b.error_file_id, `${b.id}-errors.jsonl`)}>${t("batches.errors")}</button>`
                    : null}
                </td>
                <td>${TERMINAL.includes(b.status) || b.status === "cancelling" ? null : html`<button class="danger" onClick=${() => cancel(b.id)}>${t("job.cancel")}</button>`}</td>
              </tr>`;
            })}
          </tbody>
        </table>`
      : null}
    <${Pager} paged=${paged} />
  </${Section}>`;
}
