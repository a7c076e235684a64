"""The vLLM backend, against a stand-in upstream that speaks vLLM's OpenAI server API.

No real vLLM can be installed here (it needs a CUDA build); the stand-in answers
the routes tunelab uses the way vLLM documents them: `/v1/models` (with
`max_model_len`), `/v1/completions` with a token-id prompt (streamed as SSE, with
`stream_options.include_usage`), and `/v1/load_lora_adapter`. tunelab sends every
generation, streamed or not for its own client, as a streamed token-prompt
completion, so vLLM's non-streaming and `/v1/chat/completions` routes are not
part of the wire it uses and the stand-in leaves them out. It records what it
was sent, so the test checks the wire as well as what OpenAI clients get back.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import openai
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, StreamingResponse
from transformers import AutoTokenizer

from tests.support import register_models, run_server, sdk
from tests.tiny_models import TINY_CHAT, tiny_registry_entry
from tunelab.api.app import create_app
from tunelab.settings import Settings

pytestmark = pytest.mark.api

UPSTREAM_BASE = "org/tiny-upstream"  # the name vLLM serves the base under
FT = "ft:tiny-chat:proj-a:pirate:XYZ789"
HI = [{"role": "user", "content": "Say something."}]


class StandIn:
    """vLLM's API surface, with scripted text: each model answers its own words."""

    def __init__(self) -> None:
        self.completions: list[dict[str, Any]] = []
        self.adapter_loads: list[dict[str, Any]] = []
        self.app = FastAPI()
        self.app.get("/v1/models")(self.models)
        self.app.post("/v1/load_lora_adapter")(self.load_lora_adapter)
        self.app.post("/v1/completions")(self.complete)

    def words(self, model: str, index: int) -> list[str]:
        return ["Ahoy" if model == FT else "Hello", " from", f" choice {index}", "."]

    def models(self) -> dict[str, Any]:
        ids = [UPSTREAM_BASE, *(a["lora_name"] for a in self.adapter_loads)]
        return {"object": "list", "data": [{"id": i, "max_model_len": 512} for i in ids]}

    async def load_lora_adapter(self, request: Request) -> Any:
        body = await request.json()
        if any(a["lora_name"] == body["lora_name"] for a in self.adapter_loads):
            msg = f"The lora adapter '{body['lora_name']}' has already been loaded."
            return JSONResponse({"object": "error", "message": msg}, status_code=400)
        self.adapter_loads.append(body)
        return f"Success: LoRA adapter '{body['lora_name']}' added successfully."

    async def complete(self, request: Request) -> Any:
        body = await request.json()
        self.completions.append(body)
        model, prompt = body["model"], body["prompt"]
        known = {UPSTREAM_BASE, *(a["lora_name"] for a in self.adapter_loads)}
        if model not in known:
            msg = f"The model `{model}` does not exist."
            return JSONResponse({"object": "error", "message": msg}, status_code=404)
        assert isinstance(prompt, list) and all(isinstance(t, int) for t in prompt)
        choices = []
        for i in range(body.get("n", 1)):
            words = self.words(model, i)[: body["max_tokens"]]
            reason = "stop" if len(words) == len(self.words(model, i)) else "length"
            choices.append((i, words, reason))
        usage = {
            "prompt_tokens": len(prompt),
            "completion_tokens": sum(len(w) for _, w, _ in choices),
            "total_tokens": len(prompt) + sum(len(w) for _, w, _ in choices),
        }
        assert body["stream"] is True  # tunelab always streams from vLLM, then reshapes

        def sse() -> Iterator[str]:
            def event(payload: dict[str, Any]) -> str:
                return f"data: {json.dumps(payload)}\n\n"

            base = {"id": "cmpl-standin", "object": "text_completion", "model": model}
            for i, words, reason in choices:
                for k, word in enumerate(words):
                    last = k == len(words) - 1
                    choice = {"index": i, "text": word, "finish_reason": reason if last else None}
                    yield event({**base, "choices": [choice], "usage": None})
            if body.get("stream_options", {}).get("include_usage"):
                yield event({**base, "choices": [], "usage": usage})
            yield "data: [DONE]\n\n"

        return StreamingResponse(sse(), media_type="text/event-stream")


@pytest.fixture(scope="module")
def standin() -> Iterator[tuple[StandIn, str]]:
    upstream = StandIn()
    with run_server(upstream.app) as url:
        yield upstream, url


def test_base_and_lora_fine_tune_are_served_by_vllm(
    standin: tuple[StandIn, str], settings: Settings, tiny_chat_dir: Path
) -> None:
    upstream, upstream_url = standin
    settings = settings.model_copy(update={"api_keys": "key-a:proj-a,key-b:proj-b"})
    entry = tiny_registry_entry(tiny_chat_dir)
    del entry["context_length"]  # learnt from the server's /v1/models
    entry |= {"vllm_url": f"{upstream_url}/v1", "vllm_model": UPSTREAM_BASE}
    register_models(settings, [entry])
    app = create_app(settings)
    adapter_dir = settings.models_dir / "pirate"
    app.runtime.catalog.register_fine_tuned(
        project="proj-a", model_id=FT, base_model=TINY_CHAT, path=adapter_dir, kind="lora"
    )
    with run_server(app) as url:
        a, b = sdk(url, "key-a"), sdk(url, "key-b")

        r = a.chat.completions.create(model=TINY_CHAT, messages=HI, max_tokens=8)
        assert r.choices[0].message.content == "Hello from choice 0."
        assert r.choices[0].finish_reason == "stop"
        sent = upstream.completions[-1]
        assert sent["model"] == UPSTREAM_BASE and sent["max_tokens"] == 8
        assert r.usage is not None
        assert r.usage.prompt_tokens == len(sent["prompt"])  # tunelab's template, as ids
        assert r.usage.completion_tokens == 4  # vLLM's own count

        # Streaming: OpenAI chunk shapes, the text arriving in pieces.
        stream = a.chat.completions.create(model=TINY_CHAT, messages=HI, max_tokens=2, stream=True)
        pieces = [
            c.choices[0].delta.content for c in stream if c.choices and c.choices[0].delta.content
        ]
        assert pieces == ["Hello", " from"]

        # n=2: each choice its own text and finish.
        r2 = a.chat.completions.create(model=TINY_CHAT, messages=HI, max_tokens=8, n=2)
        texts = [c.message.content or "" for c in r2.choices]
        assert texts == ["Hello from choice 0.", "Hello from choice 1."]
        # vLLM reports usage per request; each choice's tokens are counted locally
        tok = AutoTokenizer.from_pretrained(str(tiny_chat_dir))
        assert r2.usage is not None
        counted = sum(len(tok.encode(t, add_special_tokens=False)) for t in texts)
        assert r2.usage.completion_tokens == counted

        # The fine-tune: loaded into vLLM once, on first use, then served by name.
        assert upstream.adapter_loads == []
        for _ in range(2):
            r = a.chat.completions.create(model=FT, messages=HI, max_tokens=8)
            assert r.choices[0].message.content == "Ahoy from choice 0."
        assert upstream.adapter_loads == [{"lora_name": FT, "lora_path": str(adapter_dir)}]
        assert upstream.completions[-1]["model"] == FT

        # Keys and projects stay tunelab's: another project cannot reach the fine-tune.
        with pytest.raises(openai.NotFoundError):
            b.chat.completions.create(model=FT, messages=HI, max_tokens=3)

        # The legacy completions endpoint goes through the same engine.
        legacy = a.completions.create(model=TINY_CHAT, prompt="Once", max_tokens=8)
        assert legacy.choices[0].text == "Hello from choice 0."

        # What vLLM cannot give back here is refused by name, not silently dropped.
        with pytest.raises(openai.BadRequestError) as e:
            a.chat.completions.create(model=TINY_CHAT, messages=HI, max_tokens=3, logprobs=True)
        assert e.value.body["param"] == "logprobs"  # type: ignore[index]
        with pytest.raises(openai.BadRequestError) as e:  # grammars run in tunelab's worker only
            a.chat.completions.create(
                model=TINY_CHAT,
                messages=[{"role": "user", "content": "Answer in JSON."}],
                max_tokens=3,
                response_format={"type": "json_object"},
            )
        assert e.value.body["param"] == "response_format"  # type: ignore[index]

        metrics = httpx.get(f"{url}/metrics").text
        assert f'tunelab_adapter_loads_total{{model="{TINY_CHAT}"}} 1.0' in metrics


def test_an_unreachable_vllm_server_is_a_clear_502(settings: Settings, tiny_chat_dir: Path) -> None:
    entry = tiny_registry_entry(tiny_chat_dir) | {"vllm_url": "http://127.0.0.1:9/v1"}
    register_models(settings, [entry])
    with run_server(settings) as url:
        r = httpx.post(
            f"{url}/v1/chat/completions",
            json={"model": TINY_CHAT, "messages": HI, "max_tokens": 3},
            headers={"Authorization": "Bearer test-key"},
        )
    assert r.status_code == 502
    assert "unreachable" in r.json()["error"]["message"]
