// Create a fine-tuning job: pick (or upload) a file, a base model, a method and
// hyperparameters; the validator's findings for that file and model are shown
// before anything is submitted.
import { html, useEffect, useState } from "../lib/html.js";
import { api } from "../lib/api.js";
import { navigate } from "../lib/router.js";
import { t } from "../lib/i18n.js";
import { DropZone } from "../lib/upload.js";
import { ErrorBox, ModelSelect, Section, useModels } from "../lib/ui.js";
import { ReportView, useReport } from "./report.js";

const CHOICES = 100; // the newest fine-tuning files offered in the pickers

function FileSelect({ files, value, onChange, optional, testid }) {
  const known = files.some((f) => f.id === value);
  return html`<select value=${value} onChange=${(e) => onChange(e.target.value)} data-testid=${testid}>
    <option value="">${optional ? t("newjob.none") : t("newjob.pick")}</option>
    ${value && !known ? html`<option value=${value}>${value}</option>` : null}
    ${files.map((f) => html`<option value=${f.id}>${f.filename} (${f.id})</option>`)}
  </select>`;
}

// "auto" or a number, as the API takes it; anything else is sent as typed and the
// server's error names the field.
function hp(text) {
  const s = text.trim();
  if (!s || s === "auto") return "auto";
  return isNaN(Number(s)) ? s : Number(s);
}

export function NewJobPage({ query }) {
  const models = useModels();
  const [files, setFiles] = useState([]);
  const [form, setForm] = useState({
    training_file: query.get("file") || "",
    validation_file: "",
    model: "",
    method: "lora",
    n_epochs: "",
    batch_size: "",
    learning_rate_multiplier: "",
    suffix: "",
    seed: "",
  });
  const [error, setError] = useState(null);
  const [busy, setBusy] = useState(false);
  const set = (k) => (v) => setForm((f) => ({ ...f, [k]: v }));
  const loadFiles = () =>
    api("/v1/files", { query: { purpose: "fine-tune", limit: CHOICES } }).then((r) => setFiles(r.data));
  useEffect(() => {
    loadFiles();
  }, []);
  useEffect(() => {
    if (!form.model && models) {
      const first = models.find((m) => m.kind === "chat" && m.fine_tunable && m.fine_tune === "base");
      if (first) set("model")(first.id);
    }
  }, [models]);
  const reportState = useReport(form.training_file, form.model);
  const { report } = reportState;
  const usable = report && report.validation.ok && !report.validation.too_few;

  async function submit(event) {
    event.preventDefault();
    setBusy(true);
    const body = {
      model: form.model,
      training_file: form.training_file,
      method: {
        type: "supervised",
        supervised: {
          hyperparameters: {
            n_epochs: hp(form.n_epochs),
            batch_size: hp(form.batch_size),
            learning_rate_multiplier: hp(form.learning_rate_multiplier),
            method: form.method,
          },
        },
      },
    };
    if (form.validation_file) body.validation_file = form.validation_file;
    if (form.suffix.trim()) body.suffix = form.suffix.trim();
    if (form.seed.trim()) body.seed = Number(form.seed);
    try {
      const job = await api("/v1/fine_tuning/jobs", { method: "POST", body });
      navigate(`jobs/${job.id}`);
    } catch (e) {
      setError(e);
      setBusy(false);
    }
  }

  const field = (name, placeholder = "auto") => html`<label
    >${t(`hp.${name}`)}
    <input
      value=${form[name]}
      placeholder=${placeholder}
      onInput=${(e) => set(name)(e.target.value)}
      data-testid=${`hp-${name}`}
  /></label>`;
  return html`<form onSubmit=${submit} data-testid="new-job-form">
    <${Section} title=${t("newjob.title")}>
      <div class="grid">
        <label
          >${t("job.training_file")}
          <${FileSelect}
            files=${files}
            value=${form.training_file}
            onChange=${set("training_file")}
            testid="training-file"
        /></label>
        <label
          >${t("job.validation_file")}
          <${FileSelect}
            files=${files}
            value=${form.validation_file}
            onChange=${set("validation_file")}
            optional
            testid="validation-file"
        /></label>
        <label
          >${t("job.base")}
          <${ModelSelect}
            models=${models}
            value=${form.model}
            onChange=${set("model")}
            filter=${(m) => m.fine_tunable}
            testid="job-model"
        /></label>
        <label
          >${t("job.method")}
          <select value=${form.method} onChange=${(e) => set("method")(e.target.value)} data-testid="job-method">
            <option value="lora">${t("newjob.lora")}</option>
            <option value="full">${t("newjob.full")}</option>
          </select></label
        >
        ${field("n_epochs")} ${field("batch_size")} ${field("learning_rate_multiplier")}
        ${field("suffix", "")} ${field("seed", t("newjob.random"))}
      </div>
      <details>
        <summary>${t("newjob.upload")}</summary>
        <${DropZone}
          purpose="fine-tune"
          accept=".jsonl"
          onUploaded=${(f) => {
            loadFiles();
            set("training_file")(f.id);
          }}
        />
      </details>
    </${Section}>
    <${Section} title=${t("newjob.findings")} testid="findings">
      ${form.training_file
        ? html`<${ReportView}
            state=${reportState}
            epochs=${Number.isInteger(hp(form.n_epochs)) ? hp(form.n_epochs) : null}
          />`
        : html`<p class="muted">${t("newjob.pickfirst")}</p>`}
    </${Section}>
    <div class="submit">
      <${ErrorBox} error=${error} />
      <button class="primary" disabled=${busy || !usable} data-testid="create-job">
        ${t("newjob.create")}
      </button>
      ${report && !usable ? html`<span class="muted">${t("newjob.blocked")}</span>` : null}
    </div>
  </form>`;
}
