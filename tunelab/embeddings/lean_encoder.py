"""A BERT sentence encoder's forward over packed tokens, for the embedding worker.

sentence-transformers pads every batch to its longest text and runs transformers'
BERT on the padded block, so a batch of short and long texts pays for the padding
in every product: on the benchmark's corpus (passages of 1-4 sentences) ~40% of the
padded tokens are padding. And on a CPU the products run through `F.linear`, under
autocast that casts every weight to bf16 again on every call.

`LeanEncoder` computes the same function on the batch's tokens packed end to end:
every product and norm sees only real tokens, and only attention pads, per group of
`ATTENTION_GROUP` texts of similar length (the flash kernel's cost on a CPU grows
with the padded block, not the real tokens). q/k/v are one product, GELU runs as
the intermediate product's fused post-op, and the products use weights cast once
and packed once in oneDNN's blocked layout (tunelab.models.packed). Numerics
follow autocast as transformers runs under it: products (and attention) in bf16
where the worker serves bf16, sums and layer norms in fp32. Pooling (mean or CLS)
is sentence-transformers' own rule. On the 2-core AVX512-BF16 machine this took
MiniLM from ~340 to ~640 texts/s on the benchmark corpus in-process (README,
Embeddings).

It covers sentence-transformers models that are exactly "BERT, then mean or CLS
pooling, then optionally normalisation" (`build` returns None for anything else,
which keeps sentence-transformers' forward). The worker checks it against that
forward when the model loads and keeps the reference forward for good if they
disagree, so an unexpected variant costs speed, never correctness.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import torch
import torch.nn.functional as F
from torch import nn

from tunelab.models.packed import linear, usable

ATTENTION_GROUP = 16  # texts per padded attention call (measured: 64 -> 16 saved ~30%)


class _Layer:
    """One BERT layer's weights in the compute dtype: fused q/k/v, the attention
    output, the intermediate and output products, and the two layer norms."""

    def __init__(self, layer: Any, dtype: torch.dtype) -> None:
        att = layer.attention
        parts = (att.self.query, att.self.key, att.self.value)
        self.qkv = _weights(
            torch.cat([p.weight for p in parts]), torch.cat([p.bias for p in parts]), dtype
        )
        self.attention_out = _weights(att.output.dense.weight, att.output.dense.bias, dtype)
        self.norm1: nn.LayerNorm = att.output.LayerNorm
        self.intermediate = _weights(
            layer.intermediate.dense.weight, layer.intermediate.dense.bias, dtype
        )
        self.out = _weights(layer.output.dense.weight, layer.output.dense.bias, dtype)
        self.norm2: nn.LayerNorm = layer.output.LayerNorm


def _weights(
    w: torch.Tensor, b: torch.Tensor, dtype: torch.dtype
) -> tuple[torch.Tensor, torch.Tensor]:
    return w.detach().to(dtype).contiguous(), b.detach().to(dtype).contiguous()


def _product(
    x: torch.Tensor, wb: tuple[torch.Tensor, torch.Tensor], gelu: bool = False
) -> torch.Tensor:
    """x @ w.T + b (then erf GELU), on the packed weight where oneDNN can."""
    w, b = wb
    x = x.to(w.dtype)
    if usable(x, w):
        return linear(x, w, b, gelu=gelu)
    y = F.linear(x, w, b)
    return F.gelu(y) if gelu else y


class _Span(NamedTuple):
    """One attention group: its tokens' place in the packed batch and its padded block."""

    start: int  # first packed token
    tokens: int
    rows: int  # texts
    width: int  # the longest text's tokens
    where: torch.Tensor | None  # each packed token's place in the block; None: no padding
    mask: torch.Tensor | None  # (rows, 1, 1, width) real tokens; None: no padding


def _spans(lengths: list[int], device: torch.device) -> list[_Span]:
    """The attention groups of texts sorted longest first, computed once per batch and
    shared by every layer."""
    spans, start = [], 0
    for g in range(0, len(lengths), ATTENTION_GROUP):
        group = lengths[g : g + ATTENTION_GROUP]
        n, width = sum(group), group[0]
        if group[-1] == width:  # all one length: the packed tokens are the block
            spans.append(_Span(start, n, len(group), width, None, None))
        else:
            keep = torch.arange(width)[None, :] < torch.tensor(group)[:, None]
            index = keep.view(-1).nonzero().view(-1).to(device)
            mask = keep[:, None, None, :].to(device)
            spans.append(_Span(start, n, len(group), width, index, mask))
        start += n
    return spans


class LeanEncoder:
    """Pooled (not normalised) float32 sentence embeddings for lists of token ids."""

    def __init__(self, bert: Any, pooling: str, dtype: torch.dtype) -> None:
        config = bert.config
        self.heads = int(config.num_attention_heads)
        self.hidden = int(config.hidden_size)
        self.embeddings = bert.embeddings
        self.layers = [_Layer(layer, dtype) for layer in bert.encoder.layer]
        self.pooling = pooling
        self.device = bert.embeddings.word_embeddings.weight.device

    @torch.inference_mode()
    def __call__(self, ids: list[list[int]]) -> torch.Tensor:
        order = sorted(range(len(ids)), key=lambda i: -len(ids[i]))
        lengths = [len(ids[i]) for i in order]
        flat = torch.tensor([t for i in order for t in ids[i]], device=self.device)
        positions = torch.cat([torch.arange(n) for n in lengths]).to(self.device)
        emb = self.embeddings
        x = emb.word_embeddings(flat) + emb.position_embeddings(positions)
        x = emb.LayerNorm(x + emb.token_type_embeddings.weight[0])  # token type 0, as served
        spans = _spans(lengths, self.device)
        for layer in self.layers:
            att = self._attention(_product(x, layer.qkv), spans)
            x = layer.norm1(_product(att, layer.attention_out) + x)
            x = layer.norm2(_product(_product(x, layer.intermediate, gelu=True), layer.out) + x)
        x = x.float()
        count = torch.tensor(lengths, device=self.device)
        if self.pooling == "cls":
            pooled = x[torch.cumsum(count, 0) - count]
        else:
            rows = torch.repeat_interleave(torch.arange(len(ids), device=self.device), count)
            sums = torch.zeros(len(ids), self.hidden, device=self.device).index_add_(0, rows, x)
            pooled = sums / count[:, None]
        out = torch.empty_like(pooled)
        out[torch.tensor(order, device=self.device)] = pooled
        return out

    def _attention(self, qkv: torch.Tensor, spans: list[_Span]) -> torch.Tensor:
        """Each text's self-attention, for packed q/k/v: packed outputs."""
        heads, size = self.heads, self.hidden // self.heads
        outs = []
        for span in spans:
            part = qkv[span.start : span.start + span.tokens]
            if span.where is not None:
                block = part.new_zeros(span.rows * span.width, part.shape[1])
                part = block.index_copy_(0, span.where, part)
            q, k, v = part.view(span.rows, span.width, 3, heads, size).permute(2, 0, 3, 1, 4)
            att = F.scaled_dot_product_attention(q, k, v, attn_mask=span.mask)
            att = att.transpose(1, 2).reshape(span.rows * span.width, self.hidden)
            outs.append(att if span.where is None else att.index_select(0, span.where))
        return torch.cat(outs) if len(outs) > 1 else outs[0]


def build(model: Any, dtype: torch.dtype) -> LeanEncoder | None:
    """A `LeanEncoder` for a SentenceTransformer that is BERT + mean/CLS pooling
    (+ normalisation), in `dtype` (bf16 or fp32); None for anything else."""
    modules = list(model)
    names = [type(m).__name__ for m in modules]
    if names not in (["Transformer", "Pooling"], ["Transformer", "Pooling", "Normalize"]):
        return None
    bert: Any = getattr(modules[0], "auto_model", None)
    config = getattr(bert, "config", None)
    if type(bert).__name__ != "BertModel" or config is None:
        return None
    if (
        getattr(config, "hidden_act", None) != "gelu"
        or getattr(config, "position_embedding_type", "absolute") not in (None, "absolute")
        or getattr(config, "is_decoder", False)
        or bert.embeddings.word_embeddings.weight.dtype != torch.float32
    ):
        return None
    pooling = _pooling(modules[1])
    return None if pooling is None else LeanEncoder(bert, pooling, dtype)


def _pooling(module: Any) -> str | None:
    """ "mean" or "cls" when the Pooling module does exactly that, over every token."""
    config = module.get_config_dict()
    mode = config.get("pooling_mode")
    return mode if config.get("include_prompt", True) and mode in ("mean", "cls") else None
