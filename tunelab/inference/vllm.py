"""A chat engine that serves registry models on OpenAI-compatible vLLM servers.

A registry entry with `vllm_url` is served there; every other model falls through
to the in-process engine. tunelab keeps everything OpenAI-shaped (keys, projects,
the catalog, chat templates, parameter checks, streaming shapes): the seam hands
this engine token ids, and it sends them to vLLM's `/v1/completions` as a token
prompt, so the prompt vLLM runs is exactly the one tunelab templated and counted.

LoRA fine-tunes are loaded into vLLM on first use through its adapter-loading API
(`POST /v1/load_lora_adapter`, which needs a vLLM started with `--enable-lora` and
`VLLM_ALLOW_RUNTIME_LORA_UPDATING=True`), named by their fine-tune id; the adapter
directory must be readable by the vLLM server at the same path (same machine or a
shared volume). Full fine-tunes need their own vLLM server and are refused.

Each generation streams on its own thread (an HTTP stream per request; vLLM does
the batching). Closing the stream when the client goes away makes vLLM abort it.
"""

from __future__ import annotations

import json
import threading
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx

from tunelab.errors import InvalidRequest, ModelUnavailable, Overloaded, TunelabError
from tunelab.inference.handle import Delta, Failed, Finished, Generation, SamplingParams
from tunelab.inference.protocol import ChatEngine, Target, Tokenizer
from tunelab.models.registry import ModelSpec

DEFAULT_CONTEXT = 2048


class UpstreamUnavailable(TunelabError):
    """The vLLM server is down or failed: the deployment's fault, not the request's."""

    status_code = 502
    error_type = "server_error"
    default_code = "upstream_unavailable"


class VLLMEngine:
    """Routes models with a `vllm_url` to their vLLM server, the rest to `local`."""

    def __init__(
        self,
        local: ChatEngine,
        cache_dir: Path,
        *,
        max_in_flight: int = 256,
        timeout: float = 600.0,
    ) -> None:
        self.local = local
        self.cache_dir = cache_dir
        self.max_in_flight = max_in_flight
        # Connect fast, read slowly: a long generation streams for minutes.
        self._http = httpx.Client(timeout=httpx.Timeout(timeout, connect=10.0))
        self._lock = threading.Lock()
        self._tokenizers: dict[str, Tokenizer] = {}
        self._contexts: dict[str, int] = {}
        self._adapters: set[tuple[str, str]] = set()  # (server, adapter name) loaded
        self._adapter_locks: dict[tuple[str, str], threading.Lock] = {}
        self._in_flight: Counter[str] = Counter()
        self._stats: dict[str, Counter[str]] = {}

    # -- the ChatEngine seam ---------------------------------------------------------

    def tokenizer(self, target: Target) -> Tokenizer:
        if target.base.vllm_url is None:
            return self.local.tokenizer(target)
        with self._lock:
            tok = self._tokenizers.get(target.base.id)
        if tok is None:
            from tunelab.models.loading import load_tokenizer

            tok = load_tokenizer(target.base, self.cache_dir)
            with self._lock:
                tok = self._tokenizers.setdefault(target.base.id, tok)
        return tok

    def context_length(self, target: Target) -> int:
        base = target.base
        if base.vllm_url is None:
            return self.local.context_length(target)
        if base.context_length:
            return base.context_length
        with self._lock:
            known = self._contexts.get(base.id)
        if known is None:
            known = self._served_context(base)
            with self._lock:
                self._contexts[base.id] = known
        return known

    def submit(self, target: Target, prompt_ids: list[int], params: SamplingParams) -> Generation:
        base = target.base
        if base.vllm_url is None:
            return self.local.submit(target, prompt_ids, params)
        _refuse_unsupported(target, params)
        with self._lock:
            if self._in_flight[base.id] >= self.max_in_flight:
                raise Overloaded(
                    f"Too many requests are in flight to the vLLM server of '{base.id}'. "
                    "Retry shortly.",
                    retry_after=1.0,
                )
            self._in_flight[base.id] += 1
            self._stats.setdefault(base.id, Counter())["requests"] += 1
        tok = self.tokenizer(target)
        eos = tok.eos_token_id
        gen = Generation(
            prompt_ids, params, stop_token_ids=frozenset({eos} if eos is not None else ())
        )
        thread = threading.Thread(
            target=self._run, args=(target, gen), name=f"vllm-{base.id}", daemon=True
        )
        thread.start()
        return gen

    def stats(self) -> dict[str, dict[str, int]]:
        with self._lock:
            remote = {
                model: {**counters, "running": self._in_flight[model], "waiting": 0}
                for model, counters in self._stats.items()
            }
        return {**self.local.stats(), **remote}

    def close(self) -> None:
        self.local.close()
        self._http.close()

    # -- one generation, on its thread -----------------------------------------------

    def _run(self, target: Target, gen: Generation) -> None:
        base = target.base
        try:
            model = self._model_name(target)
            body = _completion_body(model, gen.prompt_ids, gen.params)
            url = f"{_root(base)}/completions"
            with self._http.stream("POST", url, json=body) as response:
                if response.status_code != 200:
                    response.read()
                    raise _upstream_error(base, response)
                self._relay(base, gen, _sse_events(response.iter_lines()))
        except (httpx.TransportError, OSError) as e:
            gen.put(Failed(_unreachable(base, e)))
        except Exception as e:  # reported to the request, never lost on a thread
            gen.put(Failed(e))
        finally:
            with self._lock:
                self._in_flight[base.id] -= 1

    def _relay(self, base: ModelSpec, gen: Generation, chunks: Iterator[dict[str, Any]]) -> None:
        """vLLM's stream → Delta events as text arrives, Finished once usage is known."""
        reasons: dict[int, str] = {}
        texts: dict[int, list[str]] = {}
        completion_tokens: int | None = None
        for chunk in chunks:
            if gen.cancelled:
                return  # leaving the `with` closes the stream: vLLM aborts the request
            for choice in chunk.get("choices") or []:
                index = int(choice.get("index", 0))
                if text := choice.get("text"):
                    texts.setdefault(index, []).append(text)
                    gen.put(Delta(index, text))
                if reason := choice.get("finish_reason"):
                    reasons[index] = "length" if reason == "length" else "stop"
            if usage := chunk.get("usage"):
                completion_tokens = int(usage.get("completion_tokens", 0))
        n = gen.params.n
        if len(reasons) < n:
            raise UpstreamUnavailable(
                f"The vLLM server of '{base.id}' ended the stream before every choice finished."
            )
        tok = self._tokenizers[base.id]
        total = 0
        for index in range(n):
            if n == 1 and completion_tokens is not None:
                count = completion_tokens
            else:  # vLLM reports usage per request; each choice's share is re-counted
                text = "".join(texts.get(index, []))
                count = len(tok.encode(text, add_special_tokens=False))
            total += count
            gen.put(Finished(index, reasons[index], count))
        with self._lock:
            self._stats[base.id]["generated_tokens"] += total
            self._stats[base.id]["prefill_tokens"] += len(gen.prompt_ids)

    # -- adapters and server facts ----------------------------------------------------

    def _model_name(self, target: Target) -> str:
        base = target.base
        if target.kind == "base":
            return base.vllm_model or base.source
        assert target.path is not None  # a lora target always has its directory
        key = (_root(base), target.id)
        with self._lock:
            if key in self._adapters:
                return target.id
            lock = self._adapter_locks.setdefault(key, threading.Lock())
        with lock:  # one load per adapter, however many requests arrive at once
            if key not in self._adapters:
                self._load_adapter(base, target.id, target.path)
                with self._lock:
                    self._adapters.add(key)
                    self._stats.setdefault(base.id, Counter())["adapter_loads"] += 1
        return target.id

    def _load_adapter(self, base: ModelSpec, name: str, path: Path) -> None:
        response = self._http.post(
            f"{_root(base)}/load_lora_adapter", json={"lora_name": name, "lora_path": str(path)}
        )
        # A vLLM that outlived a tunelab restart still holds the adapter: that is fine.
        if response.status_code == 400 and "already" in response.text:
            return
        if response.status_code != 200:
            raise UpstreamUnavailable(
                f"The vLLM server of '{base.id}' did not load the fine-tune '{name}' "
                f"(HTTP {response.status_code}: {response.text[:300]}). It must run with "
                "--enable-lora and VLLM_ALLOW_RUNTIME_LORA_UPDATING=True, and see the "
                f"adapter at {path}."
            )

    def _served_context(self, base: ModelSpec) -> int:
        """`max_model_len` from the server's /v1/models (vLLM reports it there)."""
        try:
            response = self._http.get(f"{_root(base)}/models", timeout=10.0)
            response.raise_for_status()
            name = base.vllm_model or base.source
            for entry in response.json().get("data", []):
                if entry.get("id") == name and entry.get("max_model_len"):
                    return int(entry["max_model_len"])
        except (httpx.HTTPError, ValueError) as e:
            raise _unreachable(base, e) from e
        return DEFAULT_CONTEXT


def _root(base: ModelSpec) -> str:
    assert base.vllm_url is not None
    return base.vllm_url.rstrip("/")


def _refuse_unsupported(target: Target, params: SamplingParams) -> None:
    if target.kind == "full":
        raise ModelUnavailable(
            f"'{target.id}' is a full fine-tune; a vLLM server serves one set of weights. "
            "Serve it from its own vLLM server (its own registry entry), or fine-tune with LoRA."
        )
    if params.logprobs:
        raise InvalidRequest(
            f"logprobs are not available for '{target.base.id}', which a vLLM server "
            "serves; leave logprobs unset.",
            param="logprobs",
        )
    if params.grammar is not None:  # tunelab's llguidance grammars run in its own worker only
        raise InvalidRequest(
            f"Structured outputs and tool calls (response_format json_object / json_schema, "
            f"tools, functions) are not available for '{target.base.id}', which a vLLM server "
            "serves; leave response_format and tools unset.",
            param="response_format",
        )


def _completion_body(model: str, prompt_ids: list[int], p: SamplingParams) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": model,
        "prompt": prompt_ids,  # a token prompt: vLLM runs exactly these ids
        "max_tokens": p.max_tokens,
        "temperature": p.temperature,
        "top_p": p.top_p,
        "n": p.n,
        "presence_penalty": p.presence_penalty,
        "frequency_penalty": p.frequency_penalty,
        "stream": True,
        "stream_options": {"include_usage": True},
    }
    if p.stop:
        body["stop"] = list(p.stop)
    if p.seed is not None:
        body["seed"] = p.seed
    if p.logit_bias:
        body["logit_bias"] = {str(k): v for k, v in p.logit_bias.items()}
    return body


def _sse_events(lines: Iterator[str]) -> Iterator[dict[str, Any]]:
    for line in lines:
        if not line.startswith("data:"):
            continue
        data = line[len("data:") :].strip()
        if data == "[DONE]":
            return
        event = json.loads(data)
        if isinstance(event, dict):
            if "error" in event:  # vLLM reports a mid-stream failure as an error event
                raise UpstreamUnavailable(f"vLLM failed mid-stream: {event['error']}")
            yield event


def _upstream_error(base: ModelSpec, response: httpx.Response) -> Exception:
    detail = response.text[:300]
    if response.status_code in (429, 503):
        return Overloaded(f"The vLLM server of '{base.id}' is busy: {detail}", retry_after=1.0)
    if response.status_code == 400:
        return InvalidRequest(f"The vLLM server of '{base.id}' refused the request: {detail}")
    return UpstreamUnavailable(
        f"The vLLM server of '{base.id}' answered HTTP {response.status_code}: {detail}"
    )


def _unreachable(base: ModelSpec, e: Exception) -> UpstreamUnavailable:
    return UpstreamUnavailable(
        f"The vLLM server of '{base.id}' at {base.vllm_url} is unreachable ({e}). "
        "Start it, or fix vllm_url in the registry."
    )
