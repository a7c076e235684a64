// The tunelab dashboard: sign in with an API key, then pages over the /v1 API.
import { html, render, useEffect, useState } from "./lib/html.js";
import { clearKey, onSignedOut, setKey, signIn } from "./lib/api.js";
import { lang, setLang, t } from "./lib/i18n.js";
import { useRoute } from "./lib/router.js";
import { ErrorBox } from "./lib/ui.js";
import { JobsPage } from "./pages/jobs.js";
import { JobPage } from "./pages/job.js";
import { NewJobPage } from "./pages/newjob.js";
import { FilesPage, FilePage } from "./pages/files.js";
import { PlaygroundPage } from "./pages/playground.js";
import { EmbeddingsPage } from "./pages/embeddings.js";
import { StoresPage, StorePage } from "./pages/stores.js";
import { EvalsPage, EvalPage } from "./pages/evals.js";
import { BatchesPage } from "./pages/batches.js";

const NAV = [
  ["jobs", "nav.jobs"],
  ["files", "nav.files"],
  ["playground", "nav.playground"],
  ["embeddings", "nav.embeddings"],
  ["stores", "nav.stores"],
  ["evals", "nav.evals"],
  ["batches", "nav.batches"],
];

function page({ parts, query }) {
  const [section, id, sub] = parts;
  switch (section || "jobs") {
    case "jobs":
      if (id === "new") return html`<${NewJobPage} query=${query} />`;
      return id ? html`<${JobPage} id=${id} key=${id} />` : html`<${JobsPage} />`;
    case "files":
      return id ? html`<${FilePage} id=${id} key=${id} />` : html`<${FilesPage} />`;
    case "playground":
      return html`<${PlaygroundPage} query=${query} />`;
    case "embeddings":
      return html`<${EmbeddingsPage} />`;
    case "stores":
      return id ? html`<${StorePage} id=${id} key=${id} />` : html`<${StoresPage} />`;
    case "evals":
      return id
        ? html`<${EvalPage} id=${id} runId=${query.get("run_id")} key=${id} />`
        : html`<${EvalsPage} />`;
    case "batches":
      return html`<${BatchesPage} />`;
    default:
      return html`<p class="empty">${t("notfound", { path: [section, id, sub].join("/") })}</p>`;
  }
}

function SignIn({ onSignedIn, reason }) {
  const [key, setKeyText] = useState("");
  const [remember, setRemember] = useState(false);
  const [error, setError] = useState(reason);
  const [busy, setBusy] = useState(false);
  async function submit(event) {
    event.preventDefault();
    setBusy(true);
    setKey(key.trim(), remember);
    try {
      onSignedIn(await signIn());
    } catch (e) {
      clearKey();
      setError(e);
    } finally {
      setBusy(false);
    }
  }
  return html`<main class="signin">
    <form onSubmit=${submit} data-testid="signin">
      <h1>tunelab</h1>
      <p>${t("signin.explain")}</p>
      <label
        >${t("signin.key")}
        <input
          type="password"
          autocomplete="off"
          value=${key}
          onInput=${(e) => setKeyText(e.target.value)}
          data-testid="api-key"
          placeholder="sk-…"
      /></label>
      <label class="inline"
        ><input
          type="checkbox"
          checked=${remember}
          onChange=${(e) => setRemember(e.target.checked)}
        />
        ${t("signin.remember")}</label
      >
      <${ErrorBox} error=${error} />
      <button class="primary" disabled=${busy} data-testid="signin-submit">
        ${t("signin.submit")}
      </button>
      <${LangSwitch} />
    </form>
  </main>`;
}

function LangSwitch() {
  const other = lang() === "zh" ? "en" : "zh";
  return html`<button
    type="button"
    class="lang"
    onClick=${() => setLang(other)}
    data-testid="lang-switch"
    lang=${other === "zh" ? "zh-CN" : "en"}
  >
    ${other === "zh" ? "中文" : "English"}
  </button>`;
}

function Shell({ session, onSignOut }) {
  const route = useRoute();
  const section = route.parts[0] || "jobs";
  return html`<div class="shell">
    <header class="top">
      <a class="brand" href="jobs">tunelab</a>
      <nav>
        ${NAV.map(
          ([path, label]) =>
            html`<a
              href=${path}
              class=${section === path ? "active" : ""}
              data-testid=${`nav-${path}`}
              >${t(label)}</a
            >`,
        )}
      </nav>
      <span class="project" data-testid="project" title=${t("project")}
        >${t("project")}: <b>${session.project}</b></span
      >
      <${LangSwitch} />
      ${session.auth_required
        ? html`<button type="button" onClick=${onSignOut} data-testid="signout">
            ${t("signout")}
          </button>`
        : null}
    </header>
    <main class="page">${page(route)}</main>
  </div>`;
}

function App() {
  const [session, setSession] = useState(null);
  const [checked, setChecked] = useState(false);
  const [reason, setReason] = useState(null);
  useEffect(() => {
    // With a stored key (or on a server without keys) the user is signed in already.
    signIn()
      .then(setSession, () => setSession(null))
      .finally(() => setChecked(true));
    return onSignedOut((error) => {
      clearKey();
      setReason(error);
      setSession(null);
    });
  }, []);
  if (!checked) return null;
  if (!session) return html`<${SignIn} onSignedIn=${setSession} reason=${reason} />`;
  return html`<${Shell}
    session=${session}
    onSignOut=${() => {
      clearKey();
      setReason(null);
      setSession(null);
    }}
  />`;
}

function mount() {
  document.documentElement.lang = lang() === "zh" ? "zh-CN" : "en";
  document.title = t("title");
  // A new language re-creates the whole tree, so every label and chart is redrawn.
  render(html`<${App} key=${lang()} />`, document.getElementById("app"));
}

window.addEventListener("tunelab:lang", mount);
mount();
