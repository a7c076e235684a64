"""The embedding worker's packed BERT forward (tunelab.embeddings.lean_encoder).

What serving relies on: on texts of many lengths, in any order, it gives what
transformers' BERT and sentence-transformers' pooling give on the padded batch (fp32
to float rounding, bf16 as autocast rounds), on packed and plain products alike; it
refuses models it does not compute; and the worker checks it when a model loads and
serves sentence-transformers' forward instead when they disagree.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from sentence_transformers import SentenceTransformer
from sentence_transformers.sentence_transformer.modules import Normalize, Pooling
from transformers import BertConfig, BertModel

from tunelab.embeddings import lean_encoder, service
from tunelab.embeddings.lean_encoder import ATTENTION_GROUP, LeanEncoder, build
from tunelab.embeddings.service import _ModelWorker
from tunelab.models.loading import load_sentence_transformer
from tunelab.models.registry import MINILM, Registry


def tiny_bert(seed: int = 0) -> BertModel:
    torch.manual_seed(seed)
    config = BertConfig(
        vocab_size=200,
        hidden_size=48,
        num_hidden_layers=3,
        num_attention_heads=4,
        intermediate_size=96,
        max_position_embeddings=128,
    )
    model = BertModel(config, add_pooling_layer=False).eval()
    with torch.no_grad():  # a trained model's token types differ; 0 must be the one used
        model.embeddings.token_type_embeddings.weight.normal_()
    return model


def texts(seed: int = 1) -> list[list[int]]:
    """40 texts of 1-90 tokens in no order, with runs of equal length: groups of
    ATTENTION_GROUP that pad and a group that does not."""
    rng = random.Random(seed)
    lengths = [rng.randint(1, 90) for _ in range(20)] + [7] * ATTENTION_GROUP + [3] * 4
    rng.shuffle(lengths)
    return [[rng.randrange(200) for _ in range(n)] for n in lengths]


def reference(bert: BertModel, ids: list[list[int]], pooling: str, bf16: bool) -> torch.Tensor:
    """transformers' BERT on the right-padded batch, then sentence-transformers' rule."""
    width = max(map(len, ids))
    input_ids = torch.zeros(len(ids), width, dtype=torch.long)
    mask = torch.zeros(len(ids), width, dtype=torch.long)
    for row, x in enumerate(ids):
        input_ids[row, : len(x)] = torch.tensor(x)
        mask[row, : len(x)] = 1
    with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
        hidden = bert(input_ids=input_ids, attention_mask=mask).last_hidden_state.float()
    if pooling == "cls":
        return hidden[:, 0]
    return (hidden * mask[..., None]).sum(1) / mask.sum(1, keepdim=True)


@pytest.mark.unit
@pytest.mark.parametrize("pooling", ["mean", "cls"])
@pytest.mark.parametrize("packed", [True, False], ids=["packed", "F.linear"])
def test_fp32_equals_transformers_on_texts_of_many_lengths(
    pooling: str, packed: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    if not packed:
        monkeypatch.setattr(lean_encoder, "usable", lambda x, w: False)
    bert, ids = tiny_bert(), texts()
    got = LeanEncoder(bert, pooling, torch.float32)(ids)
    want = reference(bert, ids, pooling, bf16=False)
    assert got.shape == (len(ids), 48) and got.dtype == torch.float32
    torch.testing.assert_close(got, want, rtol=0, atol=2e-5)


@pytest.mark.unit
def test_bf16_rounds_as_autocast_rounds() -> None:
    bert, ids = tiny_bert(seed=3), texts(seed=4)
    got = F.normalize(LeanEncoder(bert, "mean", torch.bfloat16)(ids), dim=1)
    want = F.normalize(reference(bert, ids, "mean", bf16=True), dim=1)
    fp32 = F.normalize(reference(bert, ids, "mean", bf16=False), dim=1)
    # As close to autocast's rounding as autocast is to fp32, and each text its own.
    assert (got * want).sum(1).min() > 0.9999
    assert (got * fp32).sum(1).min() > 0.9999
    assert torch.equal((got @ want.T).argmax(1), torch.arange(len(ids)))


@pytest.fixture(scope="module")
def minilm(model_cache: Path) -> SentenceTransformer:
    return load_sentence_transformer(Registry.load().get(MINILM), model_cache)


@pytest.mark.realmodel
def test_build_takes_bert_with_mean_or_cls_pooling_and_nothing_else(
    minilm: SentenceTransformer,
) -> None:
    transformer, dims = minilm[0], 384
    assert isinstance(build(minilm, torch.float32), LeanEncoder)
    cls = SentenceTransformer(modules=[transformer, Pooling(dims, pooling_mode="cls")])
    assert build(cls, torch.float32).pooling == "cls"  # type: ignore[union-attr]
    for other in (
        [transformer, Pooling(dims, pooling_mode="max"), Normalize()],
        [transformer, Pooling(dims, pooling_mode="mean", include_prompt=False)],
        [transformer, Pooling(dims, pooling_mode=("mean", "cls"))],
        [transformer, Pooling(dims), Normalize(), Normalize()],
    ):
        assert build(SentenceTransformer(modules=other), torch.float32) is None


@pytest.mark.realmodel
def test_the_worker_serves_minilm_through_it_with_sentence_transformers_vectors(
    model_cache: Path,
) -> None:
    spec = Registry.load().get(MINILM)
    worker = _ModelWorker(spec, model_cache, "cpu", 0.005, 256, bf16=False)
    try:
        assert worker.lean is not None
        batch = [
            "How do I reset my router to factory settings?",
            "Hold the reset button for ten seconds. " * 40,  # past the window: truncated
            "怎么把路由器恢复出厂设置？",
        ] * 30
        ids = [worker._truncated(e) for e in worker.encoder.encode_batch(batch)]
        got = worker._forward(ids)
        want = F.normalize(worker.model.encode(batch, convert_to_tensor=True), dim=1).numpy()
        assert (got * want).sum(1).min() > 0.99999
    finally:
        worker.stop()


@pytest.mark.realmodel
def test_a_lean_encoder_that_disagrees_is_dropped_for_the_reference(
    model_cache: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    """A model the lean forward computes wrongly (here: CLS pooling on a mean-pooled
    model) is caught by the load-time check and served by sentence-transformers."""

    def wrong(model: SentenceTransformer, dtype: torch.dtype) -> LeanEncoder:
        return LeanEncoder(model[0].auto_model, "cls", dtype)

    monkeypatch.setattr(lean_encoder, "build", wrong)
    spec = Registry.load().get(MINILM)
    with caplog.at_level(logging.WARNING, logger=service.__name__):
        worker = _ModelWorker(spec, model_cache, "cpu", 0.005, 256, bf16=False)
    try:
        assert worker.lean is None
        assert "disagrees" in caplog.text
        vec = worker.submit(["How do I reset my router?"], "query", None).result(30).vectors
        want = worker.model.encode(["How do I reset my router?"], normalize_embeddings=True)
        assert (vec * want).sum() > 0.99999
    finally:
        worker.stop()


@pytest.mark.unit
def test_a_model_that_fails_to_load_raises_from_the_constructor(
    model_cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from tunelab.models import loading

    def broken(*args: object, **kwargs: object) -> None:
        raise OSError("the model directory is unreadable")

    monkeypatch.setattr(loading, "load_sentence_transformer", broken)
    with pytest.raises(OSError, match="unreadable"):
        _ModelWorker(Registry.load().get(MINILM), model_cache, "cpu", 0.005, 256, bf16=False)
