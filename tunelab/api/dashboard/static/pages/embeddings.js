// Embeddings: a similarity matrix of a few texts as a heatmap, and "which of these is
// closest to my question", both with the project's embedding models.
import { html, useEffect, useMemo, useState } from "../lib/html.js";
import { api } from "../lib/api.js";
import { lang, t } from "../lib/i18n.js";
import { Chart, ErrorBox, ModelSelect, Progress, Section, useModels } from "../lib/ui.js";

const EXAMPLE = {
  en: "How do I reset my password?\nI forgot my login password\nThe weather is sunny today\nShipping takes three to five days",
  zh: "如何重置密码？\n我忘记了登录密码\n今天天气晴朗\n发货需要三到五天",
};

function cosine(a, b) {
  let dot = 0;
  let na = 0;
  let nb = 0;
  for (let i = 0; i < a.length; i += 1) {
    dot += a[i] * b[i];
    na += a[i] * a[i];
    nb += b[i] * b[i];
  }
  return dot / Math.sqrt(na * nb);
}

async function embed(model, input) {
  const response = await api("/v1/embeddings", { method: "POST", body: { model, input } });
  return response.data.sort((x, y) => x.index - y.index).map((d) => d.embedding);
}

const short = (s) => (s.length > 24 ? `${s.slice(0, 23)}…` : s);

function heatmap(texts, matrix) {
  const labels = texts.map((s, i) => `${i + 1}. ${short(s)}`);
  const data = [];
  matrix.forEach((row, i) => row.forEach((v, j) => data.push([j, i, Number(v.toFixed(3))])));
  return {
    tooltip: {
      formatter: (p) => `${texts[p.value[1]]}<br>${texts[p.value[0]]}<br><b>${p.value[2]}</b>`,
    },
    grid: { left: 180, right: 24, top: 16, bottom: 110 },
    xAxis: { type: "category", data: labels, axisLabel: { rotate: 30, interval: 0 } },
    yAxis: { type: "category", data: labels, inverse: true, axisLabel: { interval: 0 } },
    visualMap: { min: 0, max: 1, calculable: true, orient: "horizontal", left: "center", bottom: 0 },
    series: [{ type: "heatmap", data, label: { show: true } }],
  };
}

export function EmbeddingsPage() {
  const models = useModels();
  const [model, setModel] = useState("");
  const [text, setText] = useState(EXAMPLE[lang()]);
  const [matrix, setMatrix] = useState(null);
  const [query, setQuery] = useState("");
  const [ranking, setRanking] = useState(null);
  const [error, setError] = useState(null);
  const texts = text.split("\n").map((s) => s.trim()).filter(Boolean);
  useEffect(() => {
    const first = models?.find((m) => m.kind === "embedding");
    if (!model && first) setModel(first.id);
  }, [models]);

  async function compare() {
    try {
      const vectors = await embed(model, texts);
      setMatrix({ texts, values: vectors.map((a) => vectors.map((b) => cosine(a, b))) });
      setError(null);
    } catch (e) {
      setError(e);
    }
  }
  async function closest(event) {
    event.preventDefault();
    try {
      const [q, ...vectors] = await embed(model, [query, ...texts]);
      const scored = texts.map((s, i) => ({ text: s, score: cosine(q, vectors[i]) }));
      setRanking(scored.sort((a, b) => b.score - a.score));
      setError(null);
    } catch (e) {
      setError(e);
    }
  }
  const option = useMemo(() => matrix && heatmap(matrix.texts, matrix.values), [matrix]);
  return html`<div data-testid="embeddings">
    <${Section}
      title=${t("emb.title")}
      actions=${html`<label class="inline"
        >${t("emb.model")}
        <${ModelSelect} models=${models} value=${model} onChange=${setModel} kind="embedding" testid="emb-model"
      /></label>`}
    >
      <label class="block"
        >${t("emb.texts")}
        <textarea rows="6" value=${text} onInput=${(e) => setText(e.target.value)} data-testid="emb-texts"></textarea>
      </label>
      <button class="primary" onClick=${compare} disabled=${texts.length < 2 || !model} data-testid="emb-compare">
        ${t("emb.compare")}
      </button>
      <${ErrorBox} error=${error} />
      ${option ? html`<figure data-testid="heatmap" data-size=${matrix.texts.length}><${Chart} option=${option} height=${Math.max(320, 60 * matrix.texts.length + 140)} /></figure>` : null}
    </${Section}>
    <${Section} title=${t("emb.closest")}>
      <form class="row" onSubmit=${closest}>
        <input value=${query} placeholder=${t("emb.query")} onInput=${(e) => setQuery(e.target.value)} data-testid="emb-query" />
        <button class="primary" disabled=${!query.trim() || !texts.length || !model} data-testid="emb-rank">${t("emb.rank")}</button>
      </form>
      ${ranking
        ? html`<ol class="ranking" data-testid="emb-ranking">
            ${ranking.map(
              (r) => html`<li data-testid="emb-ranked">
                <span>${r.text}</span>
                <${Progress} value=${Math.max(0, r.score)} label=${r.score.toFixed(3)} />
              </li>`,
            )}
          </ol>`
        : null}
    </${Section}>
  </div>`;
}
