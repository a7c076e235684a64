// The dashboard's words in English and Chinese. `t(key, vars)` looks a key up in the
// chosen language ({name} placeholders filled from vars); the choice is kept in
// localStorage and starts from the browser's language.

import EN from "../locales/en.js";
import ZH from "../locales/zh.js";

export const MESSAGES = { en: EN, zh: ZH };
const STORED = "tunelab.lang";

function initial() {
  const stored = localStorage.getItem(STORED);
  if (stored && stored in MESSAGES) return stored;
  return (navigator.language || "en").toLowerCase().startsWith("zh") ? "zh" : "en";
}

let current = initial();

export function lang() {
  return current;
}

/** Switch language; the app redraws every page in it. */
export function setLang(next) {
  current = next in MESSAGES ? next : "en";
  localStorage.setItem(STORED, current);
  window.dispatchEvent(new Event("tunelab:lang"));
}

export function t(key, vars = {}, fallback = undefined) {
  const text = MESSAGES[current][key] ?? EN[key] ?? fallback ?? key;
  return text.replace(/\{(\w+)\}/g, (m, name) => (name in vars ? String(vars[name]) : m));
}

/** Keys that one language has and the other lacks (the browser tests expect none). */
export function untranslated() {
  return [
    ...Object.keys(EN).filter((k) => !(k in ZH)),
    ...Object.keys(ZH).filter((k) => !(k in EN)),
  ];
}
