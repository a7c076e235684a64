"""The model half of a generation worker: prompts and tokens in, logits out.

The worker (tunelab.inference.worker) schedules, samples, detokenizes and streams;
a `Forward` runs the model and keeps every running sequence's cache, one row per
sequence in the worker's order. Two implement it: `TorchForward` (transformers,
with peft adapters, below) and `LlamaCppForward` (llama.cpp through its C API,
tunelab.inference.llamacpp_forward), so both engines share one scheduler, one
sampler and one grammar engine, and differ only in how a step is computed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any, Protocol

import torch

from tunelab.inference import lean_forward
from tunelab.inference.adapters import AdapterSet
from tunelab.inference.handle import AdapterRef, Generation
from tunelab.inference.kvbatch import KVBatch
from tunelab.models.packed import unpacked

Layers = list[tuple[torch.Tensor, torch.Tensor]]
log = logging.getLogger(__name__)

# What TorchForward checks the lean forward on, each on its first use.
LEAN_KINDS = ("prefill", "step", "prefill with adapters", "step with adapters")


class Forward(Protocol):
    """A model and the caches of the sequences it is decoding, as ordered rows."""

    def attach(self, adapter: AdapterRef, in_use: set[str]) -> None:
        """Make `adapter` servable; adapters in `in_use` have running rows."""
        ...

    def prefill(self, gens: list[Generation]) -> tuple[torch.Tensor, list[object]]:
        """Read each prompt: logits after its last token (one row per generation), and a
        handle per generation for `add`."""
        ...

    def add(self, prompt: object, copies: int) -> None:
        """Append `copies` rows continuing a prefilled prompt (0: the prompt is dropped)."""
        ...

    def step(self, tokens: list[int], adapters: list[str | None]) -> torch.Tensor:
        """Feed one token to every row (with its adapter); the next logits, one row each."""
        ...

    def keep(self, rows: list[int]) -> None:
        """Keep only these rows (in this order); the others' caches are freed."""
        ...

    def reset(self) -> None:
        """Drop every row (after a failed step)."""
        ...

    def counters(self) -> dict[str, int]:
        """Counters of its own for the engine's stats (e.g. adapter loads)."""
        ...


@dataclass(frozen=True)
class _Prompt:
    """One prefilled prompt's cache, its own columns only."""

    layers: Layers
    length: int


class TorchForward:
    """A transformers model with its LoRA adapters; the caches batched in a KVBatch."""

    def __init__(self, model: Any, adapter_capacity: int, merged_adapter_bytes: int = 0) -> None:
        self.adapters = AdapterSet(model, adapter_capacity, merged_adapter_bytes)
        self._kv = KVBatch()
        # Prefills and decode steps, without and with per-row adapters, run
        # tunelab.inference.lean_forward where it computes this model (None: not yet
        # checked against transformers; False: not used).
        lean = None if lean_forward.supports(model) else False
        self._lean: dict[str, bool | None] = dict.fromkeys(LEAN_KINDS, lean)

    @property
    def config(self) -> Any:
        return self.adapters.model.config

    def attach(self, adapter: AdapterRef, in_use: set[str]) -> None:
        self.adapters.ensure(adapter, in_use)

    def prefill(self, gens: list[Generation]) -> tuple[torch.Tensor, list[object]]:
        """One forward over the left-padded prompts."""
        width = max(len(g.prompt_ids) for g in gens)
        ids = torch.zeros(len(gens), width, dtype=torch.long)
        mask = torch.zeros(len(gens), width, dtype=torch.long)
        for row, g in enumerate(gens):
            ids[row, width - len(g.prompt_ids) :] = torch.tensor(g.prompt_ids)
            mask[row, width - len(g.prompt_ids) :] = 1
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        keys = [g.adapter.key if g.adapter else None for g in gens]
        logits, cache = self._run("prefill", ids, mask, positions, None, keys)
        layers = [(k, v) for k, v, *_ in cache]
        handles: list[object] = []
        for r, g in enumerate(gens):  # the left padding of the batch is cut off
            n = len(g.prompt_ids)
            own = [(k[r : r + 1, :, -n:], v[r : r + 1, :, -n:]) for k, v in layers]
            handles.append(_Prompt(own, n))
        return logits, handles

    def add(self, prompt: object, copies: int) -> None:
        assert isinstance(prompt, _Prompt)  # made by prefill above
        if copies:
            self._kv.add(prompt.layers, prompt.length, copies=copies)

    def step(self, tokens: list[int], adapters: list[str | None]) -> torch.Tensor:
        mask, positions, data = self._kv.step_inputs()
        ids = torch.tensor([[t] for t in tokens], dtype=torch.long)
        logits, cache = self._run("step", ids, mask, positions, data, adapters, self._kv.grow)
        self._kv.absorb(cache, mask)
        return logits

    def _run(
        self,
        kind: str,
        ids: torch.Tensor,
        mask: torch.Tensor,
        positions: torch.Tensor,
        data: Layers | None,
        keys: list[str | None],
        grow: lean_forward.Grow | None = None,
    ) -> tuple[torch.Tensor, Any]:
        """Logits after each row's last token, and the grown cache, for rows with
        these adapters (None: the base): through the lean forward where it runs
        (each kind checked against transformers on first use), else transformers'.
        grow: how the lean forward appends to the cache in place (a decode step)."""
        kwargs = self.adapters.forward_kwargs(keys)
        lora = None
        if not self.adapters.plain:  # adapter layers on: rows of adapters, unmerged
            lora = self.adapters.row_lora(keys)
            if lora is None:
                return self._transformers(ids, mask, positions, data, kwargs)
            kind += " with adapters"
        if self._lean[kind] is False:
            return self._transformers(ids, mask, positions, data, kwargs)
        model = self.adapters.model
        logits, layers = lean_forward.forward(
            model, ids, mask, positions, data, lora=lora, grow=grow
        )
        if self._lean[kind] is None:
            with unpacked():  # q/k/v and gate/up run fused: no packed copies of them
                reference, cache = self._transformers(ids, mask, positions, data, kwargs)
            self._lean[kind] = self._agrees(kind, logits, reference)
            if not self._lean[kind]:
                return reference, cache
        return logits, layers

    def _transformers(
        self,
        ids: torch.Tensor,
        mask: torch.Tensor,
        positions: torch.Tensor,
        data: Layers | None,
        kwargs: dict[str, Any],
    ) -> tuple[torch.Tensor, Any]:
        from transformers import DynamicCache

        fresh = data is None  # a prefill
        out = self.adapters.model(
            input_ids=ids,
            attention_mask=mask,
            position_ids=positions,
            cache=DynamicCache(config=self.config) if fresh else DynamicCache(ddp_cache_data=data),
            use_cache=True,
            logits_to_keep=1,
            **kwargs,
        )
        return out.logits[:, -1], out.cache

    def _agrees(self, kind: str, logits: torch.Tensor, reference: torch.Tensor) -> bool:
        """Whether the lean forward gave transformers' logits, to float rounding: in
        fp32 to 1e-3 of the largest logit; in half precision (one rounding step is
        eps = 2**-7 of a bf16 value) to 8 steps of it. Products summed in another
        order round apart, and that grows over the layers: SmolLM2 in bf16, 8 padded
        prompts, was up to 4 steps off (base rows and per-row LoRA alike), while a
        LoRA 5% off in scale was 21 steps off and a different function is off by far
        more."""
        scale = float(reference.abs().max()) or 1.0
        tolerance = max(1e-3, 8 * torch.finfo(reference.dtype).eps) * scale
        same = bool(torch.allclose(logits.float(), reference.float(), rtol=0, atol=tolerance))
        if not same:
            log.warning(
                "the lean %s disagrees with transformers on %s; using transformers' "
                "forward for every %s",
                kind,
                type(self.adapters.model).__name__,
                kind,
            )
        return same

    def keep(self, rows: list[int]) -> None:
        self._kv.keep(rows)

    def reset(self) -> None:
        self._kv = KVBatch()

    def counters(self) -> dict[str, int]:
        return {"adapter_loads": self.adapters.loads}
