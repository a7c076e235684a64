"""LoRA adapters attached to one shared base model, with an LRU bound.

The first adapter wraps the base in a peft `PeftModel`; later ones are loaded
into it with `load_adapter`. Nothing is merged into the base, so one batch can mix
rows for several adapters and the base: in the lean forward, each row with its own
adapter (`row_lora`), where the model and adapters allow it, else peft's
`adapter_names` mixed-batch forward.
A batch whose rows all use one adapter runs on a merged copy of its weights
(`merged.MergedCopies`; else as above), and a batch of base rows
only runs with every adapter layer switched off: the mixed-batch path gathers and
scatters every row at every LoRA layer, which costs a single-adapter batch more
than the adapter itself, and slowed base-only decoding by ~45 ms a token
(SmolLM2-135M, CPU) once any adapter had been attached.
An adapter in use by a running sequence is never evicted. Only the worker
thread that owns the base calls into this class, so it needs no lock.
"""

from __future__ import annotations

import logging
import warnings
from collections import OrderedDict
from typing import Any

from tunelab.errors import ModelUnavailable
from tunelab.inference.handle import AdapterRef
from tunelab.inference.merged import MergedCopies
from tunelab.inference.row_lora import RowAdapters, RowLora

log = logging.getLogger(__name__)

BASE = "__base__"  # peft's name for "no adapter" in a mixed batch


class AdapterSet:
    def __init__(self, base: Any, capacity: int, merged_limit_bytes: int = 0) -> None:
        self.model = base
        self.merged = MergedCopies(merged_limit_bytes)
        self.rows = RowAdapters()
        self.capacity = max(1, capacity)
        self._loaded: OrderedDict[str, AdapterRef] = OrderedDict()
        # What the adapter layers run now, when we set it: one adapter's key, BASE
        # (layers switched off), or None (unknown: mixed batches, or just loaded).
        self._active: str | None = None
        self._layers_on = True
        self.loads = 0  # how many times an adapter was read from disk

    def ensure(self, ref: AdapterRef, in_use: set[str]) -> None:
        """Attach `ref` if it is not attached yet, evicting the least recently used."""
        if ref.key in self._loaded:
            self._loaded.move_to_end(ref.key)
            return
        self.merged.swap_out()  # peft loads and deletes on the base weights
        self._active = None
        if not (ref.path / "adapter_config.json").exists():
            raise ModelUnavailable(
                f"The adapter files of this model are missing ({ref.path}); "
                "the model cannot be served. Delete it and fine-tune again.",
                param="model",
            )
        self._load(ref)
        self._loaded[ref.key] = ref
        # Evict after loading, so peft always keeps at least one adapter registered.
        while len(self._loaded) > self.capacity:
            victim = next((k for k in self._loaded if k not in in_use and k != ref.key), None)
            if victim is None:
                break  # every attached adapter is running: go over the bound briefly
            with (
                warnings.catch_warnings()
            ):  # peft warns when the active adapter goes; expected here
                warnings.simplefilter("ignore", UserWarning)
                self.model.delete_adapter(victim)
            del self._loaded[victim]
            self.merged.forget(victim)
            self.rows.forget(victim)
            self._active = None  # peft may have switched to another one
            log.info("detached adapter %s", victim)

    def _load(self, ref: AdapterRef) -> None:
        from peft import PeftModel

        if isinstance(self.model, PeftModel):
            self.model.load_adapter(str(ref.path), adapter_name=ref.key)
        else:
            self.model = PeftModel.from_pretrained(self.model, str(ref.path), adapter_name=ref.key)
        self.model.eval()
        self._switch_layers(True)  # a freshly loaded adapter's layers start on
        self._active = None
        self.loads += 1
        log.info("attached adapter %s from %s", ref.key, ref.path)

    def _switch_layers(self, on: bool) -> None:
        """Turn every adapter layer on or off (a walk over all modules: only on a change)."""
        if on:
            self.model.base_model.enable_adapter_layers()
        else:
            self.model.base_model.disable_adapter_layers()
        self._layers_on = on

    @property
    def plain(self) -> bool:
        """Whether no adapter layer runs now: the base model, or one adapter's merged
        weights (what forward_kwargs set up for a batch of one key)."""
        return not self._loaded or not self._layers_on

    def forward_kwargs(self, keys: list[str | None]) -> dict[str, Any]:
        """Per-row adapter selection for a forward pass over a batch."""
        if not self._loaded:
            return {}
        first = keys[0] if keys else None
        if keys and all(k == first for k in keys):
            if self._active != (first or BASE):
                self._run_alone(first)
                self._active = first or BASE
            return {}
        self.merged.swap_out()
        if not self._layers_on:
            self._switch_layers(True)
        self._active = None
        return {"adapter_names": [k or BASE for k in keys]}

    def row_lora(self, keys: list[str | None]) -> RowLora | None:
        """The batch's adapters as the lean forward computes them per row, when every
        one is plain LoRA on the decoder layers' projections (else None: peft runs it)."""
        return self.rows.batch(self.model, keys)

    def _run_alone(self, key: str | None) -> None:
        """Set the model up for a batch of `key`'s rows only (None: the base's)."""
        self.merged.swap_out()
        merged = key is not None and self.merged.swap_in(self.model, key)
        peft_layers = key is not None and not merged  # merged weights carry the adapter
        if self._layers_on != peft_layers:
            self._switch_layers(peft_layers)
        if peft_layers:  # set_adapter walks every LoRA layer too
            self.model.set_adapter(key, inference_mode=True)
