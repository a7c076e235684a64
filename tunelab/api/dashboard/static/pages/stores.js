// Vector stores: create one, add files and watch each one's ingestion, try searches
// (ranked passages, scores, matched words marked) and ask grounded questions.
import { html, useEffect, useState } from "../lib/html.js";
import { api } from "../lib/api.js";
import { navigate } from "../lib/router.js";
import { t } from "../lib/i18n.js";
import { DropZone } from "../lib/upload.js";
import { Highlighted } from "../lib/highlight.js";
import {
  ErrorBox,
  Empty,
  ModelSelect,
  Pager,
  Progress,
  Section,
  Status,
  fmtBytes,
  fmtTime,
  useInterval,
  useModels,
  usePaged,
} from "../lib/ui.js";

export function StoresPage() {
  const [name, setName] = useState("");
  const [error, setError] = useState(null);
  const paged = usePaged((after) => api("/v1/vector_stores", { query: { limit: 20, after } }));
  const stores = paged.page?.data || [];
  async function create(event) {
    event.preventDefault();
    try {
      const store = await api("/v1/vector_stores", { method: "POST", body: { name: name.trim() || null } });
      navigate(`stores/${store.id}`);
    } catch (e) {
      setError(e);
    }
  }
  return html`<${Section} title=${t("stores.title")} testid="stores">
    <form class="row" onSubmit=${create}>
      <input value=${name} placeholder=${t("stores.name")} onInput=${(e) => setName(e.target.value)} data-testid="store-name" />
      <button class="primary" data-testid="create-store">${t("stores.create")}</button>
    </form>
    <${ErrorBox} error=${error || paged.error} />
    ${paged.page && !stores.length ? html`<${Empty}>${t("stores.empty")}</${Empty}>` : null}
    ${stores.length
      ? html`<table class="list" data-testid="stores-table">
          <thead><tr>
            <th>${t("stores.name")}</th><th>${t("files.id")}</th><th>${t("stores.files")}</th>
            <th>${t("files.size")}</th><th>${t("files.status")}</th><th>${t("jobs.created")}</th>
          </tr></thead>
          <tbody>
            ${stores.map(
              (s) => html`<tr data-testid="store-row" data-id=${s.id}>
                <td><a href=${`stores/${s.id}`}>${s.name || s.id}</a></td>
                <td><code class="small">${s.id}</code></td>
                <td>${s.file_counts.completed}/${s.file_counts.total}</td>
                <td>${fmtBytes(s.usage_bytes)}</td>
                <td><${Status} status=${s.status} /></td>
                <td>${fmtTime(s.created_at)}</td>
              </tr>`,
            )}
          </tbody>
        </table>`
      : null}
    <${Pager} paged=${paged} />
  </${Section}>`;
}

function StoreFiles({ store, onChange }) {
  const [names, setNames] = useState({});
  const [choices, setChoices] = useState([]);
  const [pick, setPick] = useState("");
  const [error, setError] = useState(null);
  const paged = usePaged(async (after) => {
    const page = await api(`/v1/vector_stores/${store.id}/files`, { query: { limit: 20, after } });
    const unknown = page.data.filter((f) => !(f.id in names));
    const found = await Promise.all(unknown.map((f) => api(`/v1/files/${f.id}`).catch(() => null)));
    setNames((old) => ({ ...old, ...Object.fromEntries(unknown.map((f, i) => [f.id, found[i]?.filename || f.id])) }));
    return page;
  });
  const rows = paged.page?.data || [];
  useInterval(() => paged.reload().then(onChange), 1500, rows.some((f) => f.status === "in_progress"));
  useEffect(() => {
    api("/v1/files", { query: { purpose: "assistants", limit: 100 } }).then((r) => setChoices(r.data), () => {});
  }, []);
  async function attach(fileId) {
    try {
      await api(`/v1/vector_stores/${store.id}/files`, { method: "POST", body: { file_id: fileId } });
      setError(null);
      paged.reload();
      onChange();
    } catch (e) {
      setError(e);
    }
  }
  return html`<div>
    <${DropZone} purpose="assistants" onUploaded=${(f) => attach(f.id)} testid="store-dropzone" />
    <div class="row">
      <select value=${pick} onChange=${(e) => setPick(e.target.value)} data-testid="existing-file">
        <option value="">${t("stores.pick")}</option>
        ${choices.map((f) => html`<option value=${f.id}>${f.filename} (${f.id})</option>`)}
      </select>
      <button disabled=${!pick} onClick=${() => attach(pick)}>${t("stores.add")}</button>
    </div>
    <${ErrorBox} error=${error || paged.error} />
    ${rows.length
      ? html`<table class="list" data-testid="store-files">
          <thead><tr><th>${t("files.name")}</th><th>${t("files.id")}</th><th>${t("files.status")}</th><th>${t("files.size")}</th></tr></thead>
          <tbody>
            ${rows.map(
              (f) => html`<tr data-testid="store-file" data-status=${f.status}>
                <td>${names[f.id] || f.id}</td>
                <td><code class="small">${f.id}</code></td>
                <td><${Status} status=${f.status} />${f.last_error ? html` <span class="error-text">${f.last_error.message}</span>` : null}</td>
                <td>${fmtBytes(f.usage_bytes)}</td>
              </tr>`,
            )}
          </tbody>
        </table>`
      : html`<${Empty}>${t("stores.nofiles")}</${Empty}>`}
    <${Pager} paged=${paged} />
  </div>`;
}

function Search({ store }) {
  const [query, setQuery] = useState("");
  const [max, setMax] = useState(5);
  const [result, setResult] = useState(null);
  const [error, setError] = useState(null);
  async function run(event) {
    event.preventDefault();
    try {
      const page = await api(`/v1/vector_stores/${store.id}/search`, {
        method: "POST",
        body: { query, max_num_results: Number(max) },
      });
      setResult({ query, hits: page.data });
      setError(null);
    } catch (e) {
      setError(e);
    }
  }
  return html`<div>
    <form class="row" onSubmit=${run}>
      <input value=${query} placeholder=${t("stores.query")} onInput=${(e) => setQuery(e.target.value)} data-testid="search-query" />
      <label class="inline">${t("stores.max")}
        <input type="number" min="1" max="50" value=${max} onInput=${(e) => setMax(e.target.value)} class="narrow" />
      </label>
      <button class="primary" disabled=${!query.trim()} data-testid="search">${t("stores.search")}</button>
    </form>
    <${ErrorBox} error=${error} />
    ${result && !result.hits.length ? html`<${Empty}>${t("stores.nohits")}</${Empty}>` : null}
    ${result
      ? html`<ol class="hits" data-testid="hits">
          ${result.hits.map(
            (h) => html`<li data-testid="hit" data-file=${h.file_id}>
              <header>
                <b>${h.filename}</b>
                <${Progress} value=${h.score} label=${h.score.toFixed(3)} />
              </header>
              <p>${h.content.map((c) => html`<${Highlighted} text=${c.text} query=${result.query} />`)}</p>
            </li>`,
          )}
        </ol>`
      : null}
  </div>`;
}

/** The answer with a numbered marker where each citation points. */
function Cited({ text, annotations, order }) {
  const sorted = [...annotations].sort((a, b) => a.index - b.index);
  const out = [];
  let last = 0;
  for (const a of sorted) {
    out.push(text.slice(last, a.index), html`<sup class="cite">[${order.indexOf(a.file_id) + 1}]</sup>`);
    last = a.index;
  }
  out.push(text.slice(last));
  return out;
}

function Ask({ store }) {
  const models = useModels();
  const [model, setModel] = useState("");
  const [question, setQuestion] = useState("");
  const [answer, setAnswer] = useState(null);
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState(null);
  useEffect(() => {
    const first = models?.find((m) => m.kind === "chat");
    if (!model && first) setModel(first.id);
  }, [models]);
  async function ask(event) {
    event.preventDefault();
    setBusy(true);
    try {
      const response = await api("/v1/responses", {
        method: "POST",
        body: {
          model,
          input: question,
          tools: [{ type: "file_search", vector_store_ids: [store.id], max_num_results: 5 }],
          include: ["file_search_call.results"],
        },
      });
      setAnswer({ question, response });
      setError(null);
    } catch (e) {
      setError(e);
    } finally {
      setBusy(false);
    }
  }
  const message = answer?.response.output.find((o) => o.type === "message");
  const part = message?.content[0];
  const call = answer?.response.output.find((o) => o.type === "file_search_call");
  const annotations = part?.annotations || [];
  const order = [...new Set(annotations.map((a) => a.file_id))];
  return html`<div>
    <form class="row" onSubmit=${ask}>
      <${ModelSelect} models=${models} value=${model} onChange=${setModel} testid="ask-model" />
      <input value=${question} placeholder=${t("stores.question")} onInput=${(e) => setQuestion(e.target.value)} data-testid="ask-question" />
      <button class="primary" disabled=${busy || !question.trim() || !model} data-testid="ask">${t("stores.ask")}</button>
    </form>
    <${ErrorBox} error=${error} />
    ${answer
      ? html`<div class="answer" data-testid="answer">
          <p>${part ? html`<${Cited} text=${part.text} annotations=${annotations} order=${order} />` : ""}</p>
          ${order.length
            ? html`<ol class="citations" data-testid="citations">
                ${order.map((id) => html`<li data-file=${id}>${annotations.find((a) => a.file_id === id).filename} <code class="small">${id}</code></li>`)}
              </ol>`
            : null}
          ${call?.results?.length
            ? html`<details><summary>${t("stores.sources", { n: call.results.length })}</summary>
                <ol class="hits">
                  ${call.results.map(
                    (r) => html`<li><header><b>${r.filename}</b> <span class="muted">${r.score.toFixed(3)}</span></header>
                      <p><${Highlighted} text=${r.text} query=${answer.question} /></p></li>`,
                  )}
                </ol></details>`
            : null}
        </div>`
      : null}
  </div>`;
}

export function StorePage({ id }) {
  const [store, setStore] = useState(null);
  const [error, setError] = useState(null);
  const refresh = () => api(`/v1/vector_stores/${id}`).then(setStore, setError);
  useEffect(() => {
    refresh();
  }, [id]);
  async function remove() {
    try {
      await api(`/v1/vector_stores/${id}`, { method: "DELETE" });
      navigate("stores");
    } catch (e) {
      setError(e);
    }
  }
  if (error) return html`<${ErrorBox} error=${error} />`;
  if (!store) return null;
  const c = store.file_counts;
  return html`<div data-testid="store">
    <${Section}
      title=${html`${store.name || store.id} <code class="small">${store.id}</code> <${Status} status=${store.status} />`}
      actions=${html`<button class="danger" onClick=${remove}>${t("files.delete")}</button>`}
    >
      <p data-testid="file-counts">
        ${t("stores.counts", { completed: c.completed, in_progress: c.in_progress, failed: c.failed, total: c.total })}
        · ${fmtBytes(store.usage_bytes)}
      </p>
      <${StoreFiles} store=${store} onChange=${refresh} />
    </${Section}>
    <${Section} title=${t("stores.searchtitle")} testid="search-section"><${Search} store=${store} /></${Section}>
    <${Section} title=${t("stores.asktitle")} testid="ask-section"><${Ask} store=${store} /></${Section}>
  </div>`;
}
