// Marking a query's words in a passage, so a search result shows why it matched.
// Latin words match by their stem (install / installing / installed); Chinese text
// has no spaces, so it matches by the query's two-character pieces.
import { html } from "./html.js";

const STOP = new Set(
  "a an and are as at be by can do does for from how i in is it my of on or the to what when where which who why with you your".split(" "),
);
const HAN = /\p{Script=Han}/u;

function escape(s) {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

function stem(word) {
  for (const suffix of ["ing", "ed", "es", "s"]) {
    if (word.endsWith(suffix) && word.length - suffix.length >= 3) return word.slice(0, -suffix.length);
  }
  return word;
}

/** A regular expression matching the query's words, or null if it has none worth marking. */
export function matcher(query) {
  const patterns = new Set();
  for (const token of query.toLowerCase().match(/[\p{L}\p{N}]+/gu) || []) {
    if (HAN.test(token)) {
      const chars = [...token].filter((c) => HAN.test(c));
      if (chars.length === 1) patterns.add(escape(chars[0]));
      for (let i = 0; i + 1 < chars.length; i += 1) patterns.add(escape(chars[i] + chars[i + 1]));
    } else if (token.length > 1 && !STOP.has(token)) {
      patterns.add(`(?<![\\p{L}\\p{N}])${escape(stem(token))}[\\p{L}\\p{N}]*`);
    }
  }
  if (!patterns.size) return null;
  const sorted = [...patterns].sort((a, b) => b.length - a.length);
  return new RegExp(sorted.join("|"), "giu");
}

/** `text` as nodes with the query's words wrapped in <mark>. */
export function Highlighted({ text, query }) {
  const re = matcher(query || "");
  if (!re) return text;
  const out = [];
  let last = 0;
  for (const m of text.matchAll(re)) {
    if (!m[0]) continue;
    out.push(text.slice(last, m.index), html`<mark class="hit">${m[0]}</mark>`);
    last = m.index + m[0].length;
  }
  out.push(text.slice(last));
  return out;
}
