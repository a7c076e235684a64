"""Queue bound (503 + Retry-After) and cancellation when a streaming client leaves."""

from __future__ import annotations

import time
from pathlib import Path

import openai
import pytest

from tests.support import register_models, run_server, sdk
from tests.tiny_models import TINY_CHAT, tiny_registry_entry
from tunelab.api.app import create_app
from tunelab.settings import Settings

pytestmark = pytest.mark.api

HI = [{"role": "user", "content": "Say something."}]


def test_full_queue_gives_503_and_a_disconnect_frees_the_slot(
    settings: Settings, tiny_chat_dir: Path
) -> None:
    settings = settings.model_copy(update={"max_batch_size": 1, "max_queued_requests": 1})
    register_models(settings, [tiny_registry_entry(tiny_chat_dir)])
    app = create_app(settings)
    with run_server(app) as url:
        client = sdk(url)
        # A occupies the only batch slot: wait until it is really generating.
        a = client.chat.completions.create(
            model=TINY_CHAT, messages=HI, max_tokens=400, temperature=0, stream=True
        )
        a_chunks = iter(a)
        next(a_chunks), next(a_chunks)
        # B waits in the queue (its stream is open, nothing generated yet)...
        b = client.chat.completions.create(
            model=TINY_CHAT, messages=HI, max_tokens=5, seed=1, stream=True
        )
        # ...so C finds the queue full.
        with pytest.raises(openai.InternalServerError) as e:
            client.chat.completions.create(model=TINY_CHAT, messages=HI, max_tokens=5)
        assert e.value.status_code == 503
        assert e.value.response.headers["retry-after"] == "1"
        assert "Retry" in e.value.message

        a.close()  # the client goes away: A must stop and B get the slot
        b_chunks = list(b)
        assert b_chunks[-1].choices[0].finish_reason == "length"
        stats = app.runtime.inference.engine.stats()[TINY_CHAT]
        assert stats["cancelled"] == 1
        assert stats["generated_tokens"] < 400  # A stopped long before its max_tokens
        time.sleep(0.3)
        assert (
            app.runtime.inference.engine.stats()[TINY_CHAT]["generated_tokens"]
            == stats["generated_tokens"]
        )


def test_a_client_that_times_out_stops_its_generation(
    settings: Settings, tiny_chat_dir: Path
) -> None:
    register_models(settings, [tiny_registry_entry(tiny_chat_dir)])
    app = create_app(settings)
    with run_server(app) as url:
        # 450 tiny-model tokens take under a second on some 2-core machines (bf16 on
        # AVX512-BF16), so a 1 s timeout could come after the answer: leave well before
        # (leaving before the request is admitted counts as a cancel too).
        impatient = openai.OpenAI(base_url=url + "/v1", api_key="k", max_retries=0, timeout=0.3)
        with pytest.raises(openai.APITimeoutError):
            impatient.chat.completions.create(
                model=TINY_CHAT, messages=HI, max_tokens=450, temperature=0
            )
        deadline = time.monotonic() + 10
        while app.runtime.inference.engine.stats()[TINY_CHAT].get("cancelled", 0) < 1:
            assert time.monotonic() < deadline, "generation went on after the client left"
            time.sleep(0.1)
        assert app.runtime.inference.engine.stats()[TINY_CHAT].get("generated_tokens", 0) < 450
