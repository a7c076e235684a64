// The dashboard's only way to the server: the same /v1 API any client uses, with the
// signed-in key. A key decides the project, so the pages show what that key may see.

const ROOT = new URL("..", document.baseURI); // the server root, above /dashboard/
const KEY = "tunelab.key";

export class ApiError extends Error {
  constructor(status, body) {
    const err = (body && body.error) || {};
    super(err.message || (body && body.detail) || `HTTP ${status}`);
    this.status = status;
    this.param = err.param || null;
    this.code = err.code || null;
  }
}

let info = null;
/** The signed-in session: {project, auth_required, apis} from /v1/dashboard/session. */
export function session() {
  return info;
}

export async function signIn() {
  info = await api("/v1/dashboard/session");
  return info;
}

/** Whether this server has an optional API ("evals", "batches"). */
export function hasApi(name) {
  return Boolean(info?.apis.includes(name));
}

export function getKey() {
  return sessionStorage.getItem(KEY) ?? localStorage.getItem(KEY);
}

export function setKey(key, remember) {
  sessionStorage.setItem(KEY, key);
  if (remember) localStorage.setItem(KEY, key);
}

export function clearKey() {
  sessionStorage.removeItem(KEY);
  localStorage.removeItem(KEY);
}

const signedOut = new Set();
/** Called when the server refuses the key (401): the app shows the sign-in page. */
export function onSignedOut(fn) {
  signedOut.add(fn);
  return () => signedOut.delete(fn);
}

function headers(extra = {}) {
  const key = getKey();
  return key ? { Authorization: `Bearer ${key}`, ...extra } : extra;
}

export function url(path, query) {
  const u = new URL(path.replace(/^\//, ""), ROOT);
  for (const [k, v] of Object.entries(query || {})) {
    if (v !== undefined && v !== null && v !== "") u.searchParams.set(k, v);
  }
  return u;
}

async function check(response) {
  if (response.ok) return response;
  let body = null;
  try {
    body = await response.json();
  } catch {
    body = null;
  }
  const error = new ApiError(response.status, body);
  if (response.status === 401) signedOut.forEach((fn) => fn(error));
  throw error;
}

/** A JSON call: api("/v1/files", {query: {limit: 10}}) or {method: "POST", body: {...}}. */
export async function api(path, { method = "GET", body, query, signal } = {}) {
  const init = { method, signal, headers: headers() };
  if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await check(await fetch(url(path, query), init));
  return response.json();
}

/** Upload a file with progress (fetch reports no upload progress; XMLHttpRequest does). */
export function upload(file, purpose, onProgress) {
  return new Promise((resolve, reject) => {
    const xhr = new XMLHttpRequest();
    xhr.open("POST", url("/v1/files"));
    for (const [k, v] of Object.entries(headers())) xhr.setRequestHeader(k, v);
    xhr.upload.onprogress = (e) => e.lengthComputable && onProgress?.(e.loaded / e.total);
    xhr.onerror = () => reject(new ApiError(0, { error: { message: "network error" } }));
    xhr.onload = () => {
      let body = null;
      try {
        body = JSON.parse(xhr.responseText);
      } catch {
        body = null;
      }
      if (xhr.status >= 200 && xhr.status < 300) resolve(body);
      else {
        const error = new ApiError(xhr.status, body);
        if (xhr.status === 401) signedOut.forEach((fn) => fn(error));
        reject(error);
      }
    };
    const form = new FormData();
    form.append("purpose", purpose);
    form.append("file", file, file.name);
    xhr.send(form);
  });
}

/** Save a file's content to disk (the download needs the key, so it goes through fetch). */
export async function download(fileId, filename) {
  const response = await check(
    await fetch(url(`/v1/files/${fileId}/content`), { headers: headers() }),
  );
  const blob = await response.blob();
  const link = document.createElement("a");
  link.href = URL.createObjectURL(blob);
  link.download = filename || fileId;
  document.body.append(link);
  link.click();
  link.remove();
  setTimeout(() => URL.revokeObjectURL(link.href), 10_000);
}

/**
 * Stream a chat completion: `onDelta(text)` for each piece of the answer, resolves
 * with {finish_reason, usage} when the stream ends. `signal` aborts it.
 */
export async function streamChat(body, { onDelta, signal }) {
  const response = await check(
    await fetch(url("/v1/chat/completions"), {
      method: "POST",
      signal,
      headers: headers({ "Content-Type": "application/json" }),
      body: JSON.stringify({ ...body, stream: true, stream_options: { include_usage: true } }),
    }),
  );
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  let finish = null;
  let usage = null;
  for (;;) {
    const { value, done } = await reader.read();
    if (done) break;
    buffer += value;
    const events = buffer.split("\n\n");
    buffer = events.pop();
    for (const event of events) {
      const data = event
        .split("\n")
        .filter((line) => line.startsWith("data:"))
        .map((line) => line.slice(5).trim())
        .join("");
      if (!data || data === "[DONE]") continue;
      const chunk = JSON.parse(data);
      if (chunk.error) throw new ApiError(400, chunk);
      if (chunk.usage) usage = chunk.usage;
      for (const choice of chunk.choices || []) {
        if (choice.delta?.content) onDelta(choice.delta.content);
        if (choice.finish_reason) finish = choice.finish_reason;
      }
    }
  }
  return { finish_reason: finish, usage };
}
