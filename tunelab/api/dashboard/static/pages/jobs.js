// The queue: every fine-tuning job of the project, newest first, a page at a time.
import { html, useState } from "../lib/html.js";
import { api } from "../lib/api.js";
import { t } from "../lib/i18n.js";
import {
  ErrorBox,
  Empty,
  Pager,
  Progress,
  Section,
  Status,
  fmtDuration,
  fmtTime,
  useInterval,
  usePaged,
} from "../lib/ui.js";

export const PAGE_SIZE = 25;
export const ACTIVE = ["validating_files", "queued", "running", "paused"];

/** The newest metrics of a job ({step, total_steps, ...}), from its event log. */
export async function latestMetrics(jobId) {
  const events = await api(`/v1/fine_tuning/jobs/${jobId}/events`, { query: { limit: 20 } });
  return events.data.find((e) => e.type === "metrics")?.data || null;
}

export function JobProgress({ job, metrics }) {
  if (job.status === "succeeded") return html`<${Progress} value=${1} label="100%" />`;
  if (!metrics) return html`<span class="muted">—</span>`;
  const label = `${metrics.step}/${metrics.total_steps}`;
  return html`<${Progress} value=${metrics.step / metrics.total_steps} label=${label} />`;
}

export function eta(job) {
  if (job.status !== "running" || !job.estimated_finish) return null;
  return job.estimated_finish - Date.now() / 1000;
}

export function JobsPage() {
  const [progress, setProgress] = useState({});
  const paged = usePaged(async (after) => {
    const page = await api("/v1/fine_tuning/jobs", { query: { limit: PAGE_SIZE, after } });
    // Step counts only for the jobs on this page that are moving.
    const running = page.data.filter((j) => j.status === "running" || j.status === "paused");
    const found = await Promise.all(running.map((j) => latestMetrics(j.id).catch(() => null)));
    setProgress(Object.fromEntries(running.map((j, i) => [j.id, found[i]])));
    return page;
  });
  const jobs = paged.page?.data || [];
  useInterval(paged.reload, 3000, jobs.some((j) => ACTIVE.includes(j.status)));
  return html`<${Section}
    title=${t("jobs.title")}
    testid="jobs"
    actions=${html`<a class="button primary" href="jobs/new" data-testid="new-job"
      >${t("jobs.new")}</a
    >`}
  >
    <${ErrorBox} error=${paged.error} />
    ${paged.page && !jobs.length ? html`<${Empty}>${t("jobs.empty")}</${Empty}>` : null}
    ${jobs.length
      ? html`<table class="list" data-testid="jobs-table">
          <thead>
            <tr>
              <th>${t("jobs.id")}</th>
              <th>${t("jobs.model")}</th>
              <th>${t("jobs.status")}</th>
              <th>${t("jobs.progress")}</th>
              <th>${t("jobs.eta")}</th>
              <th>${t("jobs.created")}</th>
            </tr>
          </thead>
          <tbody>
            ${jobs.map(
              (job) => html`<tr data-testid="job-row" data-id=${job.id}>
                <td><a href=${`jobs/${job.id}`}>${job.id}</a></td>
                <td>
                  <div>${job.model}</div>
                  ${job.fine_tuned_model
                    ? html`<div class="muted small">→ ${job.fine_tuned_model}</div>`
                    : null}
                </td>
                <td><${Status} status=${job.status} /></td>
                <td><${JobProgress} job=${job} metrics=${progress[job.id]} /></td>
                <td>${eta(job) === null ? "—" : fmtDuration(eta(job))}</td>
                <td>${fmtTime(job.created_at)}</td>
              </tr>`,
            )}
          </tbody>
        </table>`
      : null}
    <${Pager} paged=${paged} />
  </${Section}>`;
}
