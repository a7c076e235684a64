"""The lean forward (tunelab.inference.lean_forward) as TorchForward runs it.

What serving relies on: on the architectures it covers, prefills and decode steps
give transformers' logits and caches through continuous batching (prompts of
different lengths, a row joining late, a row leaving), packed or not, for the base
model and a merged adapter; an unmerged adapter and an architecture it does not
cover run on transformers' forward; a model it gets wrong is caught on first use
and served by transformers from then on, with no wrong token in between; and its
check leaves no second packed copy of the fused layers behind.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import torch
from torch import nn

from tunelab.inference import lean_forward
from tunelab.inference.forward import LEAN_KINDS, TorchForward
from tunelab.inference.handle import AdapterRef, Generation, SamplingParams
from tunelab.models import packed
from tunelab.models.packed import available, pack_linears

pytestmark = pytest.mark.unit

MiB = 2**20
PROMPTS = [[5, 9, 31, 7, 12, 40, 3], [8, 2, 77], [15, 16, 17, 18, 19]]


def llama(tiny_chat_dir: Path) -> Any:
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(str(tiny_chat_dir)).eval()  # type: ignore[no-untyped-call]


def qwen2() -> Any:
    """Qwen2 adds biases to q/k/v and unties the head; in code, seeded."""
    from transformers import Qwen2Config, Qwen2ForCausalLM

    torch.manual_seed(4)
    config = Qwen2Config(
        vocab_size=120,
        hidden_size=48,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=6,
        num_key_value_heads=2,
        tie_word_embeddings=False,
    )
    model = Qwen2ForCausalLM(config).eval()  # type: ignore[no-untyped-call]
    for layer in model.model.layers:  # transformers starts biases at zero
        with torch.no_grad():
            layer.self_attn.q_proj.bias.normal_()
            layer.self_attn.k_proj.bias.normal_()
    return model


def decode(
    forward: TorchForward,
    steps: int,
    adapter: AdapterRef | None = None,
    per_prompt: list[AdapterRef | None] | None = None,
    greedy: bool = True,
) -> list[torch.Tensor]:
    """Steps the way the worker schedules them: two prompts, a third joining after
    two steps, the first leaving after four; every step's logits. Every row uses
    `adapter`, or PROMPTS[i]'s row per_prompt[i]. Each row is fed its greedy token,
    or (greedy=False) a fixed one: then two runs whose logits differ by rounding
    never part ways at a near tie."""
    refs = per_prompt or [adapter] * len(PROMPTS)
    rows: list[AdapterRef | None] = []

    def join(first: int, last: int) -> list[int]:
        gens = [
            Generation(p, SamplingParams(max_tokens=steps), stop_token_ids=frozenset(), adapter=r)
            for p, r in zip(PROMPTS[first:last], refs[first:last], strict=True)
        ]
        rows.extend(refs[first:last])
        logits, handles = forward.prefill(gens)
        for handle in handles:
            forward.add(handle, 1)
        return (
            [int(t) for t in logits.argmax(-1)] if greedy else [p[0] for p in PROMPTS[first:last]]
        )

    tokens = join(0, 2)
    seen = []
    with torch.inference_mode():
        for step in range(steps):
            if step == 2:
                tokens += join(2, 3)
            if step == 4:
                forward.keep(list(range(1, len(tokens))))
                tokens, rows = tokens[1:], rows[1:]
            logits = forward.step(tokens, [r.key if r else None for r in rows])
            seen.append(logits.clone())
            fixed = [(11 * step + 5 * row + 3) % 100 for row in range(len(tokens))]
            tokens = [int(t) for t in logits.argmax(-1)] if greedy else fixed
    return seen


def lean_use(base: bool | None, adapters: bool | None) -> dict[str, bool | None]:
    """TorchForward._lean: whether each kind of forward runs lean (None: not run yet)."""
    return {kind: adapters if "adapters" in kind else base for kind in LEAN_KINDS}


def transformers_only(model: Any) -> TorchForward:
    forward = TorchForward(model, 4)
    forward._lean = lean_use(False, False)
    return forward


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("pack", [False, True])
@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_lean_forwards_give_transformers_logits_through_continuous_batching(
    arch: str, pack: bool, dtype: torch.dtype, tiny_chat_dir: Path
) -> None:
    if pack and not available():
        pytest.skip("this torch build has no oneDNN")

    def make() -> Any:
        return (llama(tiny_chat_dir) if arch == "llama" else qwen2()).to(dtype)

    model, reference = make(), make()
    # bf16 weights are packed only where oneDNN has bf16 kernels (packed._packable).
    packs = pack and pack_linears(model) > 0
    assert packs == (pack and (dtype == torch.float32 or packed.bf16_kernels()))
    assert lean_forward.supports(model)
    lean = TorchForward(model, 4)
    got, want = decode(lean, 7), decode(transformers_only(reference), 7)
    assert lean._lean == lean_use(True, None)  # checked on first use, and used
    q = model.model.layers[0].self_attn.q_proj
    assert hasattr(q.weight, "_tunelab_fused") == packs  # q/k/v as one packed product
    # bf16 keeps 8 bits of mantissa: 1e-4 in fp32, two bf16 steps of the largest logit.
    atol = 1e-4 if dtype == torch.float32 else 2 * 2**-7 * float(want[0].abs().max())
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape and g.dtype == w.dtype
        assert torch.allclose(g.float(), w.float(), atol=atol)


def test_long_decodes_grow_the_cache_in_place_with_transformers_logits(
    tiny_chat_dir: Path,
) -> None:
    # 150 steps: the batch's cache buffers run out of room (64 columns at first) and
    # are replaced twice after the last join and leave; fixed tokens, so rounding
    # never parts the two runs.
    lean = TorchForward(llama(tiny_chat_dir), 4)
    got = decode(lean, 150, greedy=False)
    want = decode(transformers_only(llama(tiny_chat_dir)), 150, greedy=False)
    assert lean._lean == lean_use(True, None)
    # The longest prompt left after 4 steps; its padding was trimmed from the others.
    assert lean._kv.length == len(PROMPTS[1]) + 150
    for g, w in zip(got, want, strict=True):
        assert torch.allclose(g, w, atol=1e-4)


def test_an_unpadded_prefill_runs_plainly_causal_with_transformers_logits_and_cache(
    tiny_chat_dir: Path,
) -> None:
    model = llama(tiny_chat_dir)
    ids = torch.tensor([PROMPTS[0] * 3])
    mask, positions = torch.ones_like(ids), torch.arange(ids.shape[1])[None]
    assert lean_forward._attention_mask(mask, ids.shape[1]) is None  # SDPA's is_causal
    with torch.inference_mode():
        logits, layers = lean_forward.forward(model, ids, mask, positions, None)
        want = model(input_ids=ids, attention_mask=mask, position_ids=positions, use_cache=True)
    assert torch.allclose(logits, want.logits[:, -1], atol=1e-4)
    # The last layer's keys depend on every position's attention in the layers below.
    for (k, v), (wk, wv, *_) in zip(layers, want.cache, strict=True):
        assert torch.allclose(k, wk, atol=1e-4) and torch.allclose(v, wv, atol=1e-4)


def test_architectures_it_does_not_compute_run_on_transformers(tiny_chat_dir: Path) -> None:
    from transformers import GPT2Config, GPT2LMHeadModel

    gpt2 = GPT2LMHeadModel(GPT2Config(n_layer=1, n_embd=32, n_head=2, vocab_size=100))
    assert not lean_forward.supports(gpt2)
    assert TorchForward(gpt2, 1)._lean == lean_use(False, False)
    gelu = llama(tiny_chat_dir)
    gelu.config.hidden_act = "gelu"  # not the gated SiLU MLP the step computes
    assert not lean_forward.supports(gelu)


class OffsetNorm(nn.Module):
    """An RMS norm scaled by (1 + weight), as some architectures define it: the lean
    step, which reads `weight` as a plain RMS norm's, gets it wrong."""

    def __init__(self, norm: Any) -> None:
        super().__init__()
        self.weight: nn.Parameter = norm.weight
        self.variance_epsilon: float = norm.variance_epsilon

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        scale = torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.variance_epsilon)
        return x * scale * (1 + self.weight)


def test_a_model_it_gets_wrong_is_served_by_transformers_from_the_first_step(
    tiny_chat_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    model, reference = llama(tiny_chat_dir), llama(tiny_chat_dir)
    for m in (model, reference):
        m.model.layers[0].input_layernorm = OffsetNorm(m.model.layers[0].input_layernorm)
    assert lean_forward.supports(model)  # it looks like a Llama
    forward = TorchForward(model, 4)
    got, want = decode(forward, 5), decode(transformers_only(reference), 5)
    assert forward._lean == lean_use(False, None)
    assert "lean prefill disagrees with transformers" in caplog.text
    assert "lean step disagrees with transformers" in caplog.text
    for g, w in zip(got, want, strict=True):
        assert torch.allclose(g, w, atol=1e-4)


def lora(model: Any, target: Path, seed: int, **options: Any) -> AdapterRef:
    """A random (non-zero) LoRA adapter of `model`, saved as a fine-tune's."""
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(seed)
    options = {"r": 4, "target_modules": ["q_proj", "v_proj", "up_proj"], **options}
    config = LoraConfig(init_lora_weights=False, **options)
    get_peft_model(model, config).save_pretrained(str(target))
    return AdapterRef(key=target.name, path=target)


def test_one_adapter_runs_lean_merged_or_per_row_and_other_variants_on_peft(
    tiny_chat_dir: Path, tmp_path: Path
) -> None:
    ref = lora(llama(tiny_chat_dir), tmp_path / "a", 3)
    dora = lora(llama(tiny_chat_dir), tmp_path / "dora", 3, use_dora=True)

    def served(
        lean: bool, merged_bytes: int, adapter: AdapterRef = ref
    ) -> tuple[TorchForward, list[torch.Tensor]]:
        model = llama(tiny_chat_dir)
        if lean and available():
            pack_linears(model)
        forward = TorchForward(model, 4, merged_bytes)
        if not lean:
            forward._lean = lean_use(False, False)
        forward.attach(adapter, set())
        return forward, decode(forward, 6, adapter=adapter)

    _, want = served(False, 0)  # peft's LoRA layers, transformers' forward
    merged, got = served(True, 64 * MiB)
    assert merged.adapters.merged.built == 1 and merged.adapters.plain
    assert merged._lean == lean_use(True, None)
    # the merged copy swapped in got a fused form of its own (kept on its q weight)
    q = merged.adapters.model.get_base_model().model.layers[0].self_attn.q_proj.base_layer
    assert hasattr(q.weight, "_tunelab_fused") == available()
    unmerged, got_unmerged = served(True, 0)  # no room for a merged copy: LoRA per row
    assert not unmerged.adapters.plain
    assert unmerged._lean == lean_use(None, True)
    for g, u, w in zip(got, got_unmerged, want, strict=True):
        assert torch.allclose(g, w, atol=1e-4)
        assert torch.allclose(u, w, atol=1e-4)
    plain_steps = decode(transformers_only(llama(tiny_chat_dir)), 6)
    assert not torch.allclose(plain_steps[0], want[0], atol=1e-3)  # the adapter matters

    on_peft, got_dora = served(True, 64 * MiB, dora)  # DoRA: neither merged nor per row
    assert on_peft._lean == lean_use(None, None)  # never ran lean
    _, want_dora = served(False, 0, dora)
    for g, w in zip(got_dora, want_dora, strict=True):
        assert torch.allclose(g, w, atol=1e-4)


@pytest.mark.parametrize("dtype", [torch.float32, torch.bfloat16])
@pytest.mark.parametrize("pack", [False, True])
@pytest.mark.parametrize("arch", ["llama", "qwen2"])
def test_rows_of_different_adapters_and_the_base_share_a_lean_batch(
    arch: str, pack: bool, dtype: torch.dtype, tiny_chat_dir: Path, tmp_path: Path
) -> None:
    """Adapters of different ranks, scalings and target modules, and base rows, in
    one batch: the lean forward adds each row's own LoRA and gives what peft's
    mixed batch gives, through joins and leaves."""
    if pack and not available():
        pytest.skip("this torch build has no oneDNN")

    def make() -> Any:
        return llama(tiny_chat_dir) if arch == "llama" else qwen2()

    a = lora(make(), tmp_path / "a", 1)
    b = lora(
        make(), tmp_path / "b", 2, r=8, lora_alpha=32,
        target_modules=["k_proj", "o_proj", "gate_proj", "down_proj", "v_proj"],
    )  # fmt: skip

    def served(lean: bool) -> tuple[TorchForward, list[torch.Tensor]]:
        model = make().to(dtype)
        if lean and pack:
            pack_linears(model)
        forward = TorchForward(model, 4, 0)  # no merged copies: every adapter row is mixed
        if not lean:
            forward._lean = lean_use(False, False)
        forward.attach(a, set())
        forward.attach(b, {a.key})
        return forward, decode(forward, 7, per_prompt=[a, None, b], greedy=False)

    lean, got = served(True)
    _, want = served(False)
    assert lean._lean == lean_use(None, True)  # every pass mixed adapters, checked once
    atol = 1e-4 if dtype == torch.float32 else 2 * 2**-7 * float(want[0].abs().max())
    for g, w in zip(got, want, strict=True):
        assert g.shape == w.shape and g.dtype == w.dtype
        assert torch.allclose(g.float(), w.float(), atol=atol)
    base = decode(transformers_only(make().to(dtype)), 7, greedy=False)
    # rows (a, base) before the third joins, (base, b) after the first leaves
    for step, adapter_row, base_row in ((0, 0, 1), (6, 1, 0)):
        assert not torch.allclose(
            got[step][adapter_row].float(), base[step][adapter_row].float(), atol=1e-2
        )
        assert torch.allclose(got[step][base_row].float(), base[step][base_row].float(), atol=atol)


def test_the_first_use_check_leaves_no_packed_copies_of_fused_layers(tiny_chat_dir: Path) -> None:
    """The reference forward of the check runs unpacked: q/k/v and gate/up are held
    packed once (fused), not twice."""
    if not available():
        pytest.skip("this torch build has no oneDNN")
    model = llama(tiny_chat_dir)
    pack_linears(model)
    decode(TorchForward(model, 4), 3)
    layer = model.model.layers[0]
    assert hasattr(layer.self_attn.q_proj.weight, "_tunelab_fused")
    for name in ("q_proj", "k_proj", "v_proj"):
        assert not hasattr(getattr(layer.self_attn, name).weight, "_tunelab_packed")
    assert hasattr(layer.self_attn.o_proj.weight, "_tunelab_packed")  # unfused: packed


def test_a_fused_form_belongs_to_its_weight_tensors_not_to_their_addresses() -> None:
    """A swapped-out merged copy is freed and the next adapter's copy may get its
    address: a fused form keyed by id() then served the new adapter's products with
    the old one's weights (seen: an adapter's first answer garbled after another
    adapter was evicted)."""
    import weakref

    if not available():
        pytest.skip("this torch build has no oneDNN")
    w = torch.randn(8, 4)
    held = lean_forward._fuse([w], [None], ((weakref.ref(w), lean_forward._version(w)),))
    assert lean_forward._current(held, [w])
    address = id(w)
    del w
    other = torch.randn(8, 4)
    for _ in range(1000):  # CPython usually hands the freed address out again at once
        if id(other) == address:
            break
        other = torch.randn(8, 4)
    assert not lean_forward._current(held, [other])
