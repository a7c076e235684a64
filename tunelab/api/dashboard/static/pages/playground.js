// Playground: chat with any model of the project, streaming, with the sampling
// parameters; up to three models side by side answer the same conversation.
import { html, useEffect, useRef, useState } from "../lib/html.js";
import { streamChat } from "../lib/api.js";
import { t } from "../lib/i18n.js";
import { ErrorBox, ModelSelect, Section, useModels } from "../lib/ui.js";

const MAX_PANES = 3;

function Pane({ pane, index, models, onModel, onRemove, canRemove }) {
  return html`<div class="pane" data-testid="pane" data-model=${pane.model} data-state=${pane.state}>
    <header>
      <${ModelSelect} models=${models} value=${pane.model} onChange=${onModel} testid=${`pane-model-${index}`} />
      ${canRemove ? html`<button type="button" class="link" onClick=${onRemove}>${t("play.remove")}</button>` : null}
    </header>
    <div class="messages">
      ${pane.messages.map(
        (m) => html`<div class=${`message ${m.role}`} data-role=${m.role}>
          <span class="role">${t(`role.${m.role}`)}</span>
          <div class="content" data-testid=${m.role === "assistant" ? "answer" : null}>${m.content}</div>
        </div>`,
      )}
      ${pane.state === "streaming" ? html`<span class="cursor">▍</span>` : null}
    </div>
    <footer class="muted small">
      ${pane.finish ? t("play.finish", { reason: pane.finish }) : ""}
      ${pane.usage ? ` · ${t("play.usage", pane.usage)}` : ""}
    </footer>
    <${ErrorBox} error=${pane.error} />
  </div>`;
}

export function PlaygroundPage({ query }) {
  const models = useModels();
  const wanted = [query.get("model"), ...(query.get("compare") || "").split(",")].filter(Boolean);
  const [panes, setPanes] = useState(() =>
    (wanted.length ? wanted : [""]).slice(0, MAX_PANES).map((model) => ({ model, messages: [], state: "idle" })),
  );
  const [system, setSystem] = useState("");
  const [prompt, setPrompt] = useState("");
  const [params, setParams] = useState({ temperature: 0.7, top_p: 1, max_tokens: 256, seed: "" });
  const aborts = useRef([]);
  useEffect(() => {
    const first = models?.find((m) => m.kind === "chat");
    if (first) setPanes((ps) => ps.map((p) => (p.model ? p : { ...p, model: first.id })));
  }, [models]);

  const patch = (i, change) =>
    setPanes((ps) => ps.map((p, j) => (j === i ? { ...p, ...(typeof change === "function" ? change(p) : change) } : p)));
  const busy = panes.some((p) => p.state === "streaming");

  function send(event) {
    event.preventDefault();
    const text = prompt.trim();
    if (!text || busy) return;
    setPrompt("");
    aborts.current = panes.map(() => new AbortController());
    panes.forEach((pane, i) => {
      const history = [...pane.messages, { role: "user", content: text }];
      patch(i, { messages: [...history, { role: "assistant", content: "" }], state: "streaming", error: null, finish: null, usage: null });
      const body = {
        model: pane.model,
        messages: [...(system.trim() ? [{ role: "system", content: system.trim() }] : []), ...history],
        temperature: Number(params.temperature),
        top_p: Number(params.top_p),
        max_tokens: Number(params.max_tokens),
      };
      if (String(params.seed).trim()) body.seed = Number(params.seed);
      const onDelta = (piece) =>
        patch(i, (p) => {
          const messages = [...p.messages];
          const last = messages[messages.length - 1];
          messages[messages.length - 1] = { ...last, content: last.content + piece };
          return { messages };
        });
      streamChat(body, { onDelta, signal: aborts.current[i].signal }).then(
        ({ finish_reason, usage }) => patch(i, { state: "done", finish: finish_reason, usage }),
        (error) => patch(i, { state: "done", error: error.name === "AbortError" ? null : error, finish: error.name === "AbortError" ? "stopped" : null }),
      );
    });
  }

  const param = (name, attrs) => html`<label
    >${t(`play.${name}`)}
    <input
      ...${attrs}
      value=${params[name]}
      onInput=${(e) => setParams({ ...params, [name]: e.target.value })}
      data-testid=${`param-${name}`}
  /></label>`;
  return html`<div data-testid="playground">
    <${Section}
      title=${t("play.title")}
      actions=${html`
        <button type="button" disabled=${panes.length >= MAX_PANES || busy} data-testid="add-pane"
          onClick=${() => setPanes([...panes, { model: panes[0]?.model || "", messages: [], state: "idle" }])}>
          ${t("play.compare")}
        </button>
        <button type="button" disabled=${busy} onClick=${() => setPanes(panes.map((p) => ({ ...p, messages: [], finish: null, usage: null, error: null })))}>
          ${t("play.clear")}
        </button>`}
    >
      <div class="params">
        ${param("temperature", { type: "number", min: 0, max: 2, step: 0.1 })}
        ${param("top_p", { type: "number", min: 0.01, max: 1, step: 0.05 })}
        ${param("max_tokens", { type: "number", min: 1, step: 1 })}
        ${param("seed", { type: "number", placeholder: t("newjob.random") })}
      </div>
      <label class="block"
        >${t("play.system")}
        <textarea rows="2" value=${system} onInput=${(e) => setSystem(e.target.value)} data-testid="system"></textarea>
      </label>
    </${Section}>
    <div class=${`panes n${panes.length}`}>
      ${panes.map(
        (pane, i) => html`<${Pane}
          pane=${pane}
          index=${i}
          models=${models}
          onModel=${(model) => patch(i, { model })}
          onRemove=${() => setPanes(panes.filter((_, j) => j !== i))}
          canRemove=${panes.length > 1 && !busy}
        />`,
      )}
    </div>
    <form class="composer" onSubmit=${send}>
      <textarea
        rows="3"
        value=${prompt}
        placeholder=${t("play.placeholder")}
        onInput=${(e) => setPrompt(e.target.value)}
        onKeyDown=${(e) => e.key === "Enter" && (e.ctrlKey || e.metaKey) && send(e)}
        data-testid="prompt"
      ></textarea>
      ${busy
        ? html`<button type="button" onClick=${() => aborts.current.forEach((a) => a.abort())} data-testid="stop">${t("play.stop")}</button>`
        : html`<button class="primary" disabled=${!prompt.trim()} data-testid="send">${t("play.send")}</button>`}
    </form>
  </div>`;
}
