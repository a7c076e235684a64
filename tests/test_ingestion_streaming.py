"""Ingestion streams: a large text file is read, chunked, embedded and written a window
at a time, so memory stays bounded whatever the file's size, and a file that fits in
one window gets exactly the chunks whole-document chunking gives (issue 11, follow-up).
"""

from __future__ import annotations

import itertools
import tracemalloc
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st
from sqlalchemy import select

from tests.support import wait_until
from tunelab.embeddings.service import EmbeddingService
from tunelab.models.registry import MINILM, Registry
from tunelab.retrieval import streaming
from tunelab.retrieval.chunking import StaticStrategy, chunk_text
from tunelab.retrieval.documents import _tidy
from tunelab.retrieval.tables import ChunkRow
from tunelab.runtime import build_runtime
from tunelab.settings import Settings

DATA = Path(__file__).resolve().parent.parent / "benchmarks" / "data"


@pytest.fixture(scope="module")
def tokenizer() -> Any:
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(Registry.load().get(MINILM).source)


@pytest.mark.unit
@hsettings(max_examples=200, deadline=None)
@given(
    text=st.text(alphabet=" \t\r\n\x00\u00a0\u3000ab.", max_size=60),
    cuts=st.lists(st.integers(min_value=0, max_value=60), max_size=6),
)
def test_text_is_tidied_the_same_in_pieces(text: str, cuts: list[int]) -> None:
    bounds = [0, *sorted(min(c, len(text)) for c in cuts), len(text)]
    pieces = [text[a:b] for a, b in itertools.pairwise(bounds)]
    assert "".join(streaming.tidied(iter(pieces))) == _tidy(text)


@pytest.mark.unit
def test_windows_give_the_chunks_of_the_whole_text(
    tokenizer: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    text = _tidy((DATA / "manual.md").read_text(encoding="utf-8") * 4)
    strategy = StaticStrategy().clamped(254)
    whole = chunk_text(text, tokenizer, strategy)
    monkeypatch.setattr(streaming, "WINDOW_CHARS", 6000)  # a dozen windows
    pieces = iter([text[i : i + 1000] for i in range(0, len(text), 1000)])
    first, ended = streaming.fill("", pieces, streaming.WINDOW_CHARS)
    assert not ended
    streamed = list(streaming.stream_chunks(first, ended, pieces, tokenizer, strategy))
    assert streamed == whole


class HashedVectors(EmbeddingService):
    """MiniLM's own tokenizer and window (chunking depends on them), and vectors from a
    hash of each text instead of the network: thousands of chunks embed at once."""

    def embed(self, model: str, texts: list[str], *, kind: str = "query") -> Any:
        out = np.stack(
            [np.random.default_rng(zlib.crc32(t.encode())).standard_normal(384) for t in texts]
        ).astype(np.float32)
        return out / np.linalg.norm(out, axis=1, keepdims=True)


def paragraphs(n: int) -> Iterator[str]:
    for k in range(n):
        yield (
            f"Paragraph {k} is about topic {k % 97}. It repeats what section {k % 13} said "
            f"about valve {k % 31}, gauge {k % 7} and the pressure of line {k % 53}.\n\n"
        )


@pytest.mark.realmodel  # MiniLM's tokenizer and window, loaded by the runtime
def test_a_large_text_file_is_ingested_in_bounded_memory(
    settings: Settings, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Python's allocations (tracemalloc) while a file is ingested stay the same for a
    file three times larger, and far below what reading it whole takes: its tokens'
    offsets alone are ~40 bytes a character (12 MiB for the larger file here)."""
    # Smaller windows, blocks and batches than in production (256k characters, 256 KiB,
    # 256 chunks: ~12 MiB), so that files of a few hundred kB are many windows.
    monkeypatch.setattr(streaming, "WINDOW_CHARS", 32 * 1024)
    monkeypatch.setattr(streaming, "BLOCK_BYTES", 64 * 1024)
    monkeypatch.setattr("tunelab.retrieval.ingestion.EMBED_BATCH", 64)
    registry = Registry.for_settings(settings)
    embedder = HashedVectors(registry, settings.model_cache_dir)
    with build_runtime(settings, embedder=embedder, embedded_worker=False) as rt:
        stores, files = rt.retrieval.stores, rt.files

        def ingest(
            name: str, n_paragraphs: int, *, trace: bool = True
        ) -> tuple[str, str, Path, int]:
            path = tmp_path / name
            with path.open("w", encoding="utf-8") as out:
                out.writelines(paragraphs(n_paragraphs))
            with path.open("rb") as stream:
                f = files.create(project="p", filename=name, purpose="assistants", stream=stream)
            if trace:
                tracemalloc.start()
            try:
                store_id = stores.create(
                    "p",
                    name=name,
                    description=None,
                    file_ids=[f.id],
                    chunking_strategy=None,
                    expires_after=None,
                    metadata=None,
                ).row.id
                done = lambda: stores.get_file("p", store_id, f.id).status != "in_progress"  # noqa: E731
                wait_until(done, timeout=300, what=f"ingestion of {name}")
                peak = tracemalloc.get_traced_memory()[1]
            finally:
                tracemalloc.stop()
            assert stores.get_file("p", store_id, f.id).status == "completed"
            return store_id, f.id, path, peak

        ingest("warm.txt", 5, trace=False)  # loads the tokenizer and the model
        *_, small_peak = ingest("small.txt", 900)
        store_id, file_id, big, peak = ingest("big.txt", 2700)
        assert big.stat().st_size > 300_000
        assert peak < 6 * 2**20 and peak < 1.5 * small_peak, (peak, small_peak)
        with rt.db() as s:
            positions = list(
                s.execute(
                    select(ChunkRow.position)
                    .where(ChunkRow.vector_store_id == store_id)
                    .order_by(ChunkRow.id)
                ).scalars()
            )
        assert len(positions) > 5 * 64 and positions == list(range(len(positions)))
        assert stores.file_text("p", store_id, file_id) == _tidy(big.read_text(encoding="utf-8"))
