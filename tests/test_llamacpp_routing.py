"""Opting a model into llama.cpp in the registry, and which models llama.cpp runs."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from tunelab.inference.llamacpp import runs_on_llamacpp
from tunelab.inference.protocol import Target
from tunelab.models.registry import SMOLLM2, Registry

pytestmark = pytest.mark.unit


def registry_with(tmp_path: Path, *entries: dict[str, object]) -> Registry:
    path = tmp_path / "models.json"
    path.write_text(json.dumps({"models": list(entries)}), encoding="utf-8")
    return Registry.load(path)


def test_a_built_in_model_is_switched_to_llama_cpp_by_id_alone(tmp_path: Path) -> None:
    built_in = Registry.load().get(SMOLLM2)
    spec = registry_with(tmp_path, {"id": SMOLLM2, "engine": "llama.cpp"}).get(SMOLLM2)
    assert spec.engine == "llama.cpp"
    assert replace(spec, engine="transformers") == built_in  # nothing else changed
    assert built_in.engine == "transformers"


@pytest.mark.parametrize(
    ("entry", "says"),
    [
        (
            {"id": SMOLLM2, "engine": "llamacpp"},
            "engine must be one of 'transformers', 'llama.cpp'",
        ),
        ({"id": SMOLLM2, "engine": "llama.cpp", "gguf_file": None}, "needs gguf_file"),
        ({"id": SMOLLM2, "engine": "llama.cpp", "gguf_file": "missing.gguf"}, "is none"),
        ({"id": SMOLLM2, "engine": "llama.cpp", "vllm_url": "http://x/v1"}, "exclude each other"),
        (
            {"id": "e", "kind": "embedding", "source": "/m", "engine": "llama.cpp"},
            "chat models only",
        ),
        (
            {"id": SMOLLM2, "engine": "llama.cpp", "llamacpp_weights": "q3_k"},
            "llamacpp_weights must be one of 'file', 'f32'",
        ),
        ({"id": SMOLLM2, "llamacpp_weights": "q8_0"}, 'llamacpp_weights needs "engine"'),
    ],
)
def test_an_engine_the_model_can_not_run_on_is_refused(
    tmp_path: Path, entry: dict[str, object], says: str
) -> None:
    with pytest.raises(ValueError, match="bad model entry") as e:
        registry_with(tmp_path, entry)
    assert says in str(e.value)


def test_the_base_and_lora_fine_tunes_run_on_llama_cpp(
    tmp_path: Path,
) -> None:
    base = registry_with(tmp_path, {"id": SMOLLM2, "engine": "llama.cpp"}).get(SMOLLM2)
    assert runs_on_llamacpp(Target(id=base.id, base=base, kind="base"))
    assert runs_on_llamacpp(Target(id="ft:x", base=base, kind="lora", path=Path("/x")))
    assert not runs_on_llamacpp(Target(id="ft:y", base=base, kind="full", path=Path("/y")))
    plain = Registry.load().get(SMOLLM2)
    assert not runs_on_llamacpp(Target(id=plain.id, base=plain, kind="base"))


def test_the_gguf_llama_cpp_loads_is_patched_once_in_the_cache(tmp_path: Path) -> None:
    from tunelab.models.llamacpp_gguf import llamacpp_gguf, pre_tokenizer

    spec = Registry.load().get(SMOLLM2)
    assert spec.gguf_path is not None
    copy = llamacpp_gguf(spec, tmp_path)
    assert copy.parent == tmp_path / "llamacpp"
    before, after = spec.gguf_path.read_bytes(), copy.read_bytes()
    found = pre_tokenizer(before)
    assert found is not None and found[1] == b"smollm"
    at = found[0]
    assert pre_tokenizer(after) == (at, b"refact")
    assert before[:at] == after[:at] and before[at + 6 :] == after[at + 6 :]
    made = copy.stat().st_mtime_ns
    assert llamacpp_gguf(spec, tmp_path) == copy and copy.stat().st_mtime_ns == made


def test_serve_refuses_an_unknown_engine_with_a_clean_message(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from click.testing import CliRunner

    from tunelab.cli.server import serve

    (tmp_path / "models.json").write_text(
        json.dumps({"models": [{"id": SMOLLM2, "engine": "vllm"}]}), encoding="utf-8"
    )
    monkeypatch.setenv("TUNELAB_DATA_DIR", str(tmp_path))
    result = CliRunner().invoke(serve, [])
    assert result.exit_code == 1 and "Traceback" not in result.output
    assert "bad model entry {'id': 'smollm2-135m-instruct', 'engine': 'vllm'}" in result.output
    assert "engine must be one of 'transformers', 'llama.cpp', not 'vllm'" in result.output
