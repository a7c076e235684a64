// Pages are addressed by real paths under the dashboard's base (/dashboard/jobs/ftjob-…),
// so a page can be bookmarked and linked (an eval run's report_url points here).
import { useEffect, useState } from "./html.js";

const BASE = new URL(document.baseURI).pathname; // "/dashboard/" (or under a prefix)
const listeners = new Set();

function current() {
  const path = location.pathname.startsWith(BASE) ? location.pathname.slice(BASE.length) : "";
  return {
    parts: path.split("/").filter(Boolean).map(decodeURIComponent),
    query: new URLSearchParams(location.search),
  };
}

/** Go to a dashboard page: `href` is relative to the base ("jobs/ftjob-1?x=y"). */
export function navigate(href, { replace = false } = {}) {
  const url = new URL(href, document.baseURI);
  history[replace ? "replaceState" : "pushState"](null, "", url);
  listeners.forEach((fn) => fn());
  window.scrollTo(0, 0);
}

export function href(path) {
  return new URL(path, document.baseURI).pathname;
}

/** The current route; re-renders the caller when it changes. */
export function useRoute() {
  const [route, setRoute] = useState(current);
  useEffect(() => {
    const update = () => setRoute(current());
    listeners.add(update);
    window.addEventListener("popstate", update);
    return () => {
      listeners.delete(update);
      window.removeEventListener("popstate", update);
    };
  }, []);
  return route;
}

// Plain <a href> links inside the dashboard change the page without a reload.
document.addEventListener("click", (event) => {
  const link = event.target.closest && event.target.closest("a[href]");
  if (!link || link.target || link.hasAttribute("download") || event.defaultPrevented) return;
  if (event.button !== 0 || event.metaKey || event.ctrlKey || event.shiftKey || event.altKey) return;
  const url = new URL(link.href);
  if (url.origin !== location.origin || !url.pathname.startsWith(BASE)) return;
  event.preventDefault();
  navigate(url.pathname + url.search);
});
