// Files: upload by drag and drop, a paged list, and one file's page with the
// validation report of a fine-tuning file.
import { html, useEffect, useState } from "../lib/html.js";
import { api, download } from "../lib/api.js";
import { navigate } from "../lib/router.js";
import { t } from "../lib/i18n.js";
import { DropZone } from "../lib/upload.js";
import {
  ErrorBox,
  Empty,
  ModelSelect,
  Pager,
  Section,
  Status,
  fmtBytes,
  fmtTime,
  useModels,
  usePaged,
} from "../lib/ui.js";
import { Report } from "./report.js";

export const PURPOSES = ["fine-tune", "assistants", "batch", "evals", "user_data"];
const PAGE_SIZE = 50;

export function FilesPage() {
  const [purpose, setPurpose] = useState("fine-tune");
  const [filter, setFilter] = useState("");
  const paged = usePaged(
    (after) => api("/v1/files", { query: { limit: PAGE_SIZE, after, purpose: filter, order: "desc" } }),
    [filter],
  );
  const files = paged.page?.data || [];
  return html`<div>
    <${Section} title=${t("files.upload")} testid="upload-section">
      <label class="inline"
        >${t("files.purpose")}
        <select value=${purpose} onChange=${(e) => setPurpose(e.target.value)} data-testid="upload-purpose">
          ${PURPOSES.map((p) => html`<option value=${p}>${p}</option>`)}
        </select></label
      >
      <${DropZone} purpose=${purpose} onUploaded=${() => paged.reload()} />
    </${Section}>
    <${Section}
      title=${t("files.title")}
      testid="files"
      actions=${html`<label class="inline"
        >${t("files.filter")}
        <select value=${filter} onChange=${(e) => setFilter(e.target.value)} data-testid="purpose-filter">
          <option value="">${t("files.all")}</option>
          ${PURPOSES.map((p) => html`<option value=${p}>${p}</option>`)}
        </select></label
      >`}
    >
      <${ErrorBox} error=${paged.error} />
      ${paged.page && !files.length ? html`<${Empty}>${t("files.empty")}</${Empty}>` : null}
      ${files.length
        ? html`<table class="list" data-testid="files-table">
            <thead>
              <tr>
                <th>${t("files.name")}</th>
                <th>${t("files.id")}</th>
                <th>${t("files.purpose")}</th>
                <th>${t("files.size")}</th>
                <th>${t("files.status")}</th>
                <th>${t("jobs.created")}</th>
              </tr>
            </thead>
            <tbody>
              ${files.map(
                (f) => html`<tr data-testid="file-row" data-id=${f.id}>
                  <td><a href=${`files/${f.id}`}>${f.filename}</a></td>
                  <td><code class="small">${f.id}</code></td>
                  <td>${f.purpose}</td>
                  <td>${fmtBytes(f.bytes)}</td>
                  <td><${Status} status=${f.status} /></td>
                  <td>${fmtTime(f.created_at)}</td>
                </tr>`,
              )}
            </tbody>
          </table>`
        : null}
      <${Pager} paged=${paged} />
    </${Section}>
  </div>`;
}

export function FilePage({ id }) {
  const [file, setFile] = useState(null);
  const [error, setError] = useState(null);
  const models = useModels();
  const [model, setModel] = useState("");
  useEffect(() => {
    api(`/v1/files/${id}`).then(setFile, setError);
  }, [id]);
  useEffect(() => {
    if (!model && models) {
      const first = models.find((m) => m.kind === "chat" && m.fine_tunable && m.fine_tune === "base");
      if (first) setModel(first.id);
    }
  }, [models]);
  async function remove() {
    try {
      await api(`/v1/files/${id}`, { method: "DELETE" });
      navigate("files");
    } catch (e) {
      setError(e);
    }
  }
  if (error) return html`<${ErrorBox} error=${error} />`;
  if (!file) return null;
  const tune = file.purpose === "fine-tune";
  return html`<div data-testid="file">
    <${Section}
      title=${html`${file.filename} <code class="small">${file.id}</code>`}
      actions=${html`
        ${tune
          ? html`<a class="button primary" href=${`jobs/new?file=${file.id}`} data-testid="finetune-file"
              >${t("files.finetune")}</a
            >`
          : null}
        <button onClick=${() => download(file.id, file.filename)}>${t("files.download")}</button>
        <button class="danger" onClick=${remove}>${t("files.delete")}</button>
      `}
    >
      <dl class="facts">
        <dt>${t("files.purpose")}</dt><dd>${file.purpose}</dd>
        <dt>${t("files.size")}</dt><dd>${fmtBytes(file.bytes)}</dd>
        <dt>${t("jobs.created")}</dt><dd>${fmtTime(file.created_at)}</dd>
      </dl>
    </${Section}>
    ${tune
      ? html`<${Section}
          title=${t("report.title")}
          testid="report-section"
          actions=${html`<label class="inline"
            >${t("report.model")}
            <${ModelSelect}
              models=${models}
              value=${model}
              onChange=${setModel}
              filter=${(m) => m.fine_tunable}
              testid="report-model"
          /></label>`}
        >
          <${Report} fileId=${file.id} model=${model} />
        </${Section}>`
      : null}
  </div>`;
}
