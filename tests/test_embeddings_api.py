"""POST /v1/embeddings with the real MiniLM model, through the openai SDK."""

from __future__ import annotations

import base64
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import openai
import pytest

pytestmark = pytest.mark.realmodel
MODEL = "all-minilm-l6-v2"


def _vecs(resp) -> np.ndarray:
    return np.array([d.embedding for d in resp.data], dtype=np.float32)


def test_related_sentences_score_higher(client: openai.OpenAI) -> None:
    texts = [
        "How do I reset my router to factory settings?",
        "Steps to restore the router's default configuration",
        "The best pizza dough needs a long cold fermentation.",
        "怎么把路由器恢复出厂设置？",
        "怎么把路由器恢复出厂设置？",
        "今天的天气很好",
    ]
    resp = client.embeddings.create(model=MODEL, input=texts)
    v = _vecs(resp)
    assert v.shape == (6, 384)
    np.testing.assert_allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-4)
    sims = v @ v.T
    assert sims[0, 1] > sims[0, 2] + 0.3
    # MiniLM is an English model: Chinese text embeds (identical text, identical
    # vector), but cross-sentence Chinese similarity needs a multilingual model.
    assert sims[3, 4] == pytest.approx(1.0, abs=1e-5) and sims[3, 5] < 0.99
    assert resp.usage.prompt_tokens == resp.usage.total_tokens > 20
    assert [d.index for d in resp.data] == list(range(6))


def test_float_and_base64_identical(client: openai.OpenAI) -> None:
    text = ["tunelab embeds text", "第二句话"]
    default = client.embeddings.create(model=MODEL, input=text)  # SDK asks for base64 and decodes
    floats = client.embeddings.create(model=MODEL, input=text, encoding_format="float")
    raw = client.embeddings.create(model=MODEL, input=text, encoding_format="base64")
    np.testing.assert_array_equal(_vecs(default), _vecs(floats))
    decoded = np.frombuffer(base64.b64decode(raw.data[0].embedding), dtype="<f4")
    np.testing.assert_array_equal(decoded, _vecs(floats)[0])


def test_dimensions_truncate_and_renormalise(client: openai.OpenAI) -> None:
    full = _vecs(client.embeddings.create(model=MODEL, input="hello world"))[0]
    short = _vecs(client.embeddings.create(model=MODEL, input="hello world", dimensions=64))[0]
    assert short.shape == (64,)
    assert abs(np.linalg.norm(short) - 1) < 1e-5
    np.testing.assert_allclose(short, full[:64] / np.linalg.norm(full[:64]), rtol=1e-5, atol=1e-6)


def test_aliases_and_token_arrays(client: openai.OpenAI) -> None:
    by_alias = _vecs(client.embeddings.create(model="text-embedding-3-small", input="router reset"))
    direct = _vecs(client.embeddings.create(model=MODEL, input="router reset"))
    np.testing.assert_array_equal(by_alias, direct)
    ids = [2799, 25141]  # MiniLM wordpiece ids
    resp = client.embeddings.create(model=MODEL, input=[ids, ids])
    assert len(resp.data) == 2 and resp.usage.total_tokens == 4


@pytest.mark.parametrize(
    ("kwargs", "param"),
    [
        ({"input": ""}, "input"),
        ({"input": []}, "input"),
        ({"input": ["ok", ""]}, "input"),
        ({"input": ["x"] * 2049}, "input"),
        ({"input": [[10**9]]}, "input"),
        ({"input": "hi", "dimensions": 1000}, "dimensions"),
        ({"input": "hi", "model": "smollm2-135m-instruct"}, "model"),
    ],
)
def test_bad_inputs_name_the_param(client: openai.OpenAI, kwargs, param) -> None:
    kwargs = {"model": MODEL, **kwargs}
    with pytest.raises(openai.BadRequestError) as e:
        client.embeddings.create(**kwargs)
    assert e.value.body["param"] == param


def test_unknown_model_404(client: openai.OpenAI) -> None:
    with pytest.raises(openai.NotFoundError) as e:
        client.embeddings.create(model="no-such-model", input="x")
    assert e.value.body["code"] == "model_not_found"


def test_concurrent_requests_get_their_own_rows(client: openai.OpenAI) -> None:
    texts = [f"sentence number {i} about topic {i % 3}" for i in range(24)]
    expected = _vecs(client.embeddings.create(model=MODEL, input=texts))
    with ThreadPoolExecutor(8) as pool:
        got = list(
            pool.map(lambda t: _vecs(client.embeddings.create(model=MODEL, input=t))[0], texts)
        )
    # Each row is its own text's vector, to the rounding of its batch (bf16 autocast on
    # CPUs with native bf16 rounds differently per batch shape): a mixed-up row would be
    # another sentence's vector, cosine 0.95 at most between these near-identical ones.
    cosines = np.stack(got) @ expected.T
    assert (cosines.argmax(axis=1) == np.arange(len(texts))).all()
    assert np.diag(cosines).min() > 0.9999


def test_too_long_input_is_refused_without_failing_its_batch(client: openai.OpenAI) -> None:
    long_text = "word " * 9000  # over the 8192 tokens allowed per input
    texts = [f"sentence number {i}" for i in range(6)]
    expected = _vecs(client.embeddings.create(model=MODEL, input=texts))

    def call(i: int):  # type: ignore[no-untyped-def]
        if i == 3:
            with pytest.raises(openai.BadRequestError) as e:
                client.embeddings.create(model=MODEL, input=["fine", long_text])
            return e.value.body
        return _vecs(client.embeddings.create(model=MODEL, input=texts[i]))[0]

    with ThreadPoolExecutor(6) as pool:
        got = list(pool.map(call, range(6)))
    assert got[3]["param"] == "input" and "8192" in got[3]["message"]
    np.testing.assert_allclose(
        np.stack([g for i, g in enumerate(got) if i != 3]),
        np.delete(expected, 3, axis=0),
        atol=2e-5,
    )
