// One fine-tuning job: live curves from its metrics events, the event log, the
// hyperparameters it trains with, checkpoints, and cancel / pause / resume.
import { html, useEffect, useMemo, useRef, useState } from "../lib/html.js";
import { api, download } from "../lib/api.js";
import { navigate } from "../lib/router.js";
import { t } from "../lib/i18n.js";
import {
  Chart,
  ErrorBox,
  Empty,
  Progress,
  Section,
  Status,
  fmtDuration,
  fmtNumber,
  fmtTime,
  useInterval,
} from "../lib/ui.js";
import { ACTIVE, eta } from "./jobs.js";

const EVENT_PAGE = 1000;
const SHOWN_EVENTS = 200;

/**
 * All events of a job, oldest first, kept up to date: the first call reads every page;
 * later calls read newest-first pages only until they reach an event already held.
 */
function useEvents(jobId, status, active) {
  const [events, setEvents] = useState([]);
  const known = useRef(new Set());
  const [error, setError] = useState(null);
  async function fetchNew() {
    const fresh = [];
    let after;
    for (;;) {
      const page = await api(`/v1/fine_tuning/jobs/${jobId}/events`, {
        query: { limit: known.current.size ? 100 : EVENT_PAGE, after },
      });
      const cut = page.data.findIndex((e) => known.current.has(e.id));
      fresh.push(...(cut < 0 ? page.data : page.data.slice(0, cut)));
      if (cut >= 0 || !page.has_more) break;
      after = page.last_id;
    }
    if (!fresh.length) return;
    fresh.forEach((e) => known.current.add(e.id));
    setEvents((old) => [...old, ...fresh.reverse()]);
  }
  const busy = useRef(false);
  const again = useRef(false);
  // One fetch at a time: a slow answer must not be read twice by the next tick. A call
  // made meanwhile runs once that fetch ends: the status moved, and a job's last event
  // (e.g. "Job cancelled") comes after the final status, when the polling stops.
  const load = () => {
    if (busy.current) {
      again.current = true;
      return;
    }
    busy.current = true;
    fetchNew()
      .then(() => setError(null), setError)
      .finally(() => {
        busy.current = false;
        if (again.current) {
          again.current = false;
          load();
        }
      });
  };
  // Read again whenever the status moves (a cancelled job's last events come after).
  useEffect(() => {
    load();
  }, [jobId, status]);
  useInterval(load, 2000, active);
  return { events, error, refresh: load };
}

// Metric names the charts know; anything else numeric goes to "other metrics",
// and DPO's reward margins get their own chart when a job reports them.
const LOSS = ["train_loss", "valid_loss", "full_valid_loss"];
const ACCURACY = [
  "train_mean_token_accuracy",
  "valid_mean_token_accuracy",
  "full_valid_mean_token_accuracy",
];
const LR = ["learning_rate"];
const NOT_PLOTTED = new Set(["step", "total_steps"]);

/** {name: [[step, value], ...]} from metrics events; a resumed step keeps its latest values. */
export function metricSeries(events) {
  const byStep = new Map();
  for (const e of events) if (e.type === "metrics" && e.data) byStep.set(e.data.step, e.data);
  const series = {};
  for (const step of [...byStep.keys()].sort((a, b) => a - b)) {
    for (const [name, value] of Object.entries(byStep.get(step))) {
      if (NOT_PLOTTED.has(name) || typeof value !== "number") continue;
      (series[name] ||= []).push([step, value]);
    }
  }
  return series;
}

function lineOption(series, names, yName) {
  const shown = names.filter((n) => series[n]?.length);
  return {
    tooltip: { trigger: "axis" },
    legend: { data: shown.map((n) => t(`metric.${n}`, {}, n)), top: 0 },
    grid: { left: 56, right: 24, top: 36, bottom: 40 },
    xAxis: { type: "value", name: t("job.step"), nameLocation: "middle", nameGap: 26, minInterval: 1 },
    yAxis: { type: "value", name: yName, scale: true },
    dataZoom: [{ type: "inside" }],
    series: shown.map((n) => ({
      name: t(`metric.${n}`, {}, n),
      type: "line",
      data: series[n],
      // Validation points are sparse: mark each; training points are dense.
      showSymbol: series[n].length < 40,
      symbolSize: 6,
    })),
  };
}

function Curves({ series }) {
  const names = Object.keys(series);
  const margins = names.filter((n) => n.includes("margin"));
  const known = new Set([...LOSS, ...ACCURACY, ...LR, ...margins]);
  const other = names.filter((n) => !known.has(n));
  const charts = [
    ["loss", LOSS, t("job.chart.loss")],
    ["accuracy", ACCURACY, t("job.chart.accuracy")],
    ["lr", LR, t("job.chart.lr")],
    ["margins", margins, t("job.chart.margins")],
    ["other", other, t("job.chart.other")],
  ].filter(([, group]) => group.some((n) => series[n]?.length));
  const options = useMemo(
    () => charts.map(([, group, title]) => lineOption(series, group, title)),
    [series],
  );
  if (!charts.length) return html`<${Empty}>${t("job.nometrics")}</${Empty}>`;
  return html`<div class="charts">
    ${charts.map(
      ([id, group, title], i) => html`<figure
        data-testid=${`chart-${id}`}
        data-points=${series[group[0]]?.length || 0}
      >
        <figcaption>${title}</figcaption>
        <${Chart} option=${options[i]} />
      </figure>`,
    )}
  </div>`;
}

function Actions({ job, onChange }) {
  const [error, setError] = useState(null);
  async function act(verb) {
    try {
      onChange(await api(`/v1/fine_tuning/jobs/${job.id}/${verb}`, { method: "POST" }));
      setError(null);
    } catch (e) {
      setError(e);
    }
  }
  const can = {
    pause: ["running", "queued"].includes(job.status),
    resume: job.status === "paused",
    cancel: ACTIVE.includes(job.status),
  };
  return html`<div class="actions">
    ${can.pause ? html`<button onClick=${() => act("pause")} data-testid="pause">${t("job.pause")}</button>` : null}
    ${can.resume ? html`<button onClick=${() => act("resume")} data-testid="resume">${t("job.resume")}</button>` : null}
    ${can.cancel ? html`<button class="danger" onClick=${() => act("cancel")} data-testid="cancel">${t("job.cancel")}</button>` : null}
    ${job.fine_tuned_model
      ? html`<a
          class="button primary"
          data-testid="open-playground"
          href=${`playground?model=${encodeURIComponent(job.fine_tuned_model)}&compare=${encodeURIComponent(job.model)}`}
          >${t("job.try")}</a
        >`
      : null}
    <${ErrorBox} error=${error} />
  </div>`;
}

function Checkpoints({ job, version }) {
  const [list, setList] = useState(null);
  useEffect(() => {
    api(`/v1/fine_tuning/jobs/${job.id}/checkpoints`, { query: { limit: 100 } }).then(
      (r) => setList(r.data),
      () => setList([]),
    );
  }, [job.id, version]);
  if (!list) return null;
  if (!list.length) return html`<${Empty}>${t("job.nocheckpoints")}</${Empty}>`;
  const m = (c, k, d = 3) => fmtNumber(c.metrics[k], d);
  return html`<table class="list" data-testid="checkpoints">
    <thead>
      <tr>
        <th>${t("job.step")}</th>
        <th>${t("metric.train_loss")}</th>
        <th>${t("metric.valid_loss")}</th>
        <th>${t("metric.valid_mean_token_accuracy")}</th>
        <th>${t("job.checkpoint.model")}</th>
        <th></th>
      </tr>
    </thead>
    <tbody>
      ${list.map(
        (c) => html`<tr data-testid="checkpoint-row">
          <td>${c.step_number}</td>
          <td>${m(c, "train_loss")}</td>
          <td>${m(c, "full_valid_loss") !== "—" ? m(c, "full_valid_loss") : m(c, "valid_loss")}</td>
          <td>${m(c, "valid_mean_token_accuracy")}</td>
          <td><code class="small">${c.fine_tuned_model_checkpoint}</code></td>
          <td>
            <button
              data-testid="try-checkpoint"
              onClick=${() =>
                navigate(
                  `playground?model=${encodeURIComponent(c.fine_tuned_model_checkpoint)}&compare=${encodeURIComponent(job.model)}`,
                )}
            >
              ${t("job.checkpoint.try")}
            </button>
          </td>
        </tr>`,
      )}
    </tbody>
  </table>`;
}

function Details({ job }) {
  // A DPO job's hyperparameters (with beta) live under method.dpo only.
  const hp = job.hyperparameters || job.method?.dpo?.hyperparameters || {};
  const rows = [
    [t("job.base"), job.model],
    [t("job.method"), `${job.method?.type || "supervised"} · ${job.training_method || "lora"}`],
    [t("hp.n_epochs"), hp.n_epochs],
    [t("hp.batch_size"), hp.batch_size],
    [t("hp.learning_rate_multiplier"), hp.learning_rate_multiplier],
    ...(hp.beta !== undefined ? [["beta", hp.beta]] : []),
    [t("job.seed"), job.seed],
    [t("job.suffix"), job.user_provided_suffix || "—"],
    [t("job.training_file"), html`<a href=${`files/${job.training_file}`}>${job.training_file}</a>`],
    [
      t("job.validation_file"),
      job.validation_file
        ? html`<a href=${`files/${job.validation_file}`}>${job.validation_file}</a>`
        : "—",
    ],
    [t("job.trained_tokens"), fmtNumber(job.trained_tokens)],
    [t("jobs.created"), fmtTime(job.created_at)],
    [t("job.finished"), fmtTime(job.finished_at)],
  ];
  return html`<dl class="facts" data-testid="hyperparameters">
    ${rows.map(([k, v]) => html`<dt>${k}</dt><dd>${v}</dd>`)}
    ${job.result_files.map(
      (id) => html`<dt>${t("job.results")}</dt>
        <dd><button class="link" onClick=${() => download(id, `${job.id}-results.csv`)}>${id}</button></dd>`,
    )}
  </dl>`;
}

function EventLog({ events }) {
  const [all, setAll] = useState(false);
  const newest = [...events].reverse();
  const shown = all ? newest : newest.slice(0, SHOWN_EVENTS);
  return html`<div class="log" data-testid="event-log">
    ${shown.map(
      (e) => html`<div class=${`event level-${e.level}`} data-type=${e.type}>
        <time>${fmtTime(e.created_at)}</time><span>${e.message}</span>
      </div>`,
    )}
    ${!all && newest.length > SHOWN_EVENTS
      ? html`<button class="link" onClick=${() => setAll(true)}>
          ${t("job.allevents", { n: newest.length })}
        </button>`
      : null}
  </div>`;
}

export function JobPage({ id }) {
  const [job, setJob] = useState(null);
  const [error, setError] = useState(null);
  const active = !job || ACTIVE.includes(job.status);
  const { events, error: eventsError } = useEvents(id, job?.status, active);
  const refresh = () => api(`/v1/fine_tuning/jobs/${id}`).then(setJob, setError);
  useEffect(() => {
    refresh();
  }, [id]);
  useInterval(refresh, 2000, active && !error);
  const series = useMemo(() => metricSeries(events), [events]);
  if (error) return html`<${ErrorBox} error=${error} />`;
  if (!job) return null;
  const last = [...events].reverse().find((e) => e.type === "metrics")?.data;
  const left = eta(job);
  return html`<div data-testid="job" data-status=${job.status}>
    <${Section}
      title=${html`${t("job.title")} <code>${job.id}</code> <${Status} status=${job.status} />`}
      actions=${html`<${Actions} job=${job} onChange=${setJob} />`}
    >
      ${job.fine_tuned_model
        ? html`<p>${t("job.model")}: <code data-testid="fine-tuned-model">${job.fine_tuned_model}</code></p>`
        : null}
      ${job.error?.message
        ? html`<div class="error" role="alert">${job.error.message}</div>`
        : null}
      <div class="progress-row">
        ${last || job.status === "succeeded"
          ? html`<${Progress}
              value=${job.status === "succeeded" ? 1 : last.step / last.total_steps}
              label=${last ? `${t("job.step")} ${last.step}/${last.total_steps}` : "100%"}
            />`
          : null}
        ${left !== null ? html`<span data-testid="eta">${t("jobs.eta")}: ${fmtDuration(left)}</span>` : null}
      </div>
      <${ErrorBox} error=${eventsError} />
      <${Curves} series=${series} />
    </${Section}>
    <div class="columns">
      <${Section} title=${t("job.hyperparameters")}><${Details} job=${job} /></${Section}>
      <${Section} title=${t("job.events")}><${EventLog} events=${events} /></${Section}>
    </div>
    <${Section} title=${t("job.checkpoints")} testid="checkpoints-section">
      <${Checkpoints} job=${job} version=${job.status + events.filter((e) => e.type !== "metrics").length} />
    </${Section}>
  </div>`;
}
