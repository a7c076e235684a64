"""One generation thread per loaded model: a bounded queue and batched decoding.

Torch and llama.cpp on CPU parallelise inside an operation, not across Python
threads, so each loaded model gets exactly one thread that owns it. The model
itself is behind a `Forward` (tunelab.inference.forward): transformers or
llama.cpp; this module is everything else. The loop:

1. admit waiting requests while the batch has room: attach their adapters, run
   their prompts through the model together (one left-padded pass; the n choices
   of a request share its prompt's cache), choose each choice's first token, and
   append their cache rows to the batch;
2. run ONE decode step for every running sequence together, whatever adapter
   each uses, and hand each its next token.

Every running sequence advances one token per step, so a long generation never
starves a short one, and a request waits at most for the prefill of the
requests admitted just before it. Requests beyond `max_queued` waiting ones are
refused with `Overloaded` (503 + Retry-After) instead of waiting unboundedly.
A request is admitted when its `n` choices fit in the batch (one alone always
does), so the sequences held in memory never pass max(max_batch, n).

Requests of different projects share a batch, so one request's failure is kept
to that request: choosing its next token, starting it, attaching its adapter or
prefilling its group fails only the requests involved, and the others keep going.
Only a failed decode step (the one forward over everyone) fails the whole batch.
"""

from __future__ import annotations

import logging
import threading
from collections import Counter, deque
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

import numpy as np
import torch

from tunelab import compute
from tunelab.errors import TunelabError, queue_full
from tunelab.inference.constrained import ConstraintFailed, TokenConstraint, blocked_tokens
from tunelab.inference.forward import Forward
from tunelab.inference.handle import Delta, Failed, Finished, Generation, TokenLogprob
from tunelab.inference.sampling import (
    adjust_logits,
    choose,
    make_generator,
    token_logprob,
)
from tunelab.inference.textstream import IncrementalDetokenizer, StopMatcher

log = logging.getLogger(__name__)


PREFILL_TOKENS = (
    2048  # padded prompt tokens per prefill pass: bounds the pause for running sequences
)


def _prefill_groups(gens: list[Generation]) -> list[list[Generation]]:
    """Prompts that arrived together are prefilled together, up to PREFILL_TOKENS each pass."""
    groups: list[list[Generation]] = []
    for gen in sorted(gens, key=lambda g: len(g.prompt_ids)):
        group = groups[-1] if groups else None
        if group is None or (len(group) + 1) * len(gen.prompt_ids) > PREFILL_TOKENS:
            groups.append([gen])
        else:
            group.append(gen)
    return groups


@dataclass
class _Sequence:
    """One choice of one request, while it is being generated."""

    gen: Generation
    index: int
    detok: IncrementalDetokenizer
    stopper: StopMatcher
    generator: np.random.Generator
    constraint: TokenConstraint | None
    counts: Counter[int] = field(default_factory=Counter)
    n_generated: int = 0
    last_token: int = 0
    done: bool = False

    @property
    def adapter_key(self) -> str | None:
        return self.gen.adapter.key if self.gen.adapter else None


F = TypeVar("F", bound=Forward)


class GenerationWorker(Generic[F]):
    def __init__(
        self,
        forward: F,
        tokenizer: Any,
        *,
        name: str,
        max_batch: int,
        max_queued: int,
        device: str = "cpu",
    ) -> None:
        self.name = name
        self.device = device  # where the model runs: a CPU's work goes to tunelab.compute
        self.forward = forward
        self.tokenizer = tokenizer
        self.max_batch = max(1, max_batch)
        self.max_queued = max(0, max_queued)
        self._pending: deque[Generation] = deque()
        self._active: list[_Sequence] = []
        self._blocked: dict[frozenset[int], torch.Tensor] = {}
        self._cond = threading.Condition()
        self._stopping = False
        self.stats: Counter[str] = Counter()
        self._thread = threading.Thread(target=self._run, name=f"generate-{name}", daemon=True)
        self._thread.start()

    # -- called from request threads -------------------------------------------------

    def submit(self, gen: Generation) -> None:
        with self._cond:
            if len(self._pending) >= self.max_queued:
                raise queue_full(self.name, len(self._pending))
            self._pending.append(gen)
            self._cond.notify()

    def snapshot(self) -> dict[str, int]:
        """The engine's stats for this model: counters (its own and its Forward's) and the
        gauges `waiting` and `running` (generations queued, sequences decoding)."""
        with self._cond:
            waiting, running = len(self._pending), len(self._active)
        return {**self.stats, **self.forward.counters(), "waiting": waiting, "running": running}

    @property
    def idle(self) -> bool:
        with self._cond:
            return not self._pending and not self._active

    def close(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        self._thread.join(timeout=30)

    # -- the worker thread -----------------------------------------------------------

    def _run(self) -> None:
        torch.set_grad_enabled(False)
        while True:
            with self._cond:
                while not self._stopping and not self._pending and not self._active:
                    self._cond.wait()
                if self._stopping:
                    break
                admitted = self._admissible()
            try:  # on the process's compute thread (tunelab.compute)
                compute.run(self._iterate, admitted, device=self.device)
            except Exception as e:  # a failed forward must not leave requests hanging
                log.exception("generation step failed on %s", self.name)
                for seq in self._active:
                    if not seq.done:
                        seq.gen.put(Failed(e))
                self._active = []
                self.forward.reset()
        for gen in self._pending:
            gen.put(Failed(RuntimeError("the server is shutting down")))
        for seq in self._active:
            seq.gen.put(Failed(RuntimeError("the server is shutting down")))

    def _iterate(self, admitted: list[Generation]) -> None:
        """Start the admitted requests, then one step of every running sequence."""
        with torch.inference_mode():
            if admitted:
                self._admit(admitted)
            if self._active:
                self._step()

    def _admissible(self) -> list[Generation]:
        """Waiting requests whose choices fit in the batch now (called holding the lock)."""
        admitted: list[Generation] = []
        seqs = len(self._active)
        while self._pending:
            n = max(1, self._pending[0].params.n)
            if seqs and seqs + n > self.max_batch:
                break
            admitted.append(self._pending.popleft())
            seqs += n
        return admitted

    def _fail(self, gen: Generation, error: Exception) -> None:
        """End one request with `error`, and only it: its running choices stop."""
        log.warning("generation failed on %s: %r", self.name, error)
        self.stats["failed"] += 1
        if isinstance(error, ConstraintFailed):  # the grammar allowed no token: say so
            self.stats["constraint_failures"] += 1
            error = TunelabError(
                f"The output could not be kept to the requested format: {error}",
                code="constraint_failed",
            )
        gen.put(Failed(error))
        for seq in self._active:
            if seq.gen is gen:
                seq.done = True

    def _admit(self, gens: list[Generation]) -> None:
        """Attach adapters, prefill the prompts together, start each request's choices."""
        ready: list[Generation] = []
        for gen in gens:
            if gen.cancelled:
                self.stats["cancelled"] += 1
                continue
            try:
                if gen.adapter is not None:
                    # running sequences and requests admitted with this one keep their adapters
                    in_use = {s.adapter_key for s in self._active if s.adapter_key}
                    in_use |= {g.adapter.key for g in ready if g.adapter}
                    self.forward.attach(gen.adapter, in_use)
            except Exception as e:
                gen.put(Failed(e))
                continue
            ready.append(gen)
        for group in _prefill_groups(ready):
            try:
                logits, prompts = self.forward.prefill(group)
            except Exception as e:
                for gen in group:
                    gen.put(Failed(e))
                continue
            self.stats["prefill_tokens"] += sum(len(g.prompt_ids) for g in group)
            self.stats["prefill_passes"] += 1
            rows = _numpy(logits)
            for row, gen in enumerate(group):
                seqs: list[_Sequence] = []
                try:
                    seqs = self._start(gen, rows[row])
                except Exception as e:
                    self._fail(gen, e)
                try:  # the rows continuing this prompt; none frees it
                    self.forward.add(prompts[row], len(seqs))
                except Exception as e:
                    self._fail(gen, e)
                    continue
                self._active.extend(seqs)

    def _constraint(self, gen: Generation) -> TokenConstraint | None:
        if gen.params.grammar is None:
            return None
        blocked = self._blocked.get(gen.stop_token_ids)
        if blocked is None:
            blocked = self._blocked[gen.stop_token_ids] = blocked_tokens(
                self.tokenizer, gen.stop_token_ids
            )
        return TokenConstraint(self.tokenizer, gen.params.grammar, blocked)

    def _start(self, gen: Generation, logits: np.ndarray) -> list[_Sequence]:
        """The request's choices, each with its first token; those not done at once."""
        seqs = []
        for i in range(gen.params.n):  # a failure here fails this request only (_admit)
            seq = _Sequence(
                gen=gen,
                index=i,
                detok=IncrementalDetokenizer(self.tokenizer),
                stopper=StopMatcher(list(gen.params.stop)),
                generator=make_generator(gen.params.seed, i),
                constraint=self._constraint(gen),
            )
            self._advance(seq, logits)
            if not seq.done:
                seqs.append(seq)
        return seqs

    def _step(self) -> None:
        logits = _numpy(
            self.forward.step(
                [s.last_token for s in self._active], [s.adapter_key for s in self._active]
            )
        )
        self.stats["decode_steps"] += 1
        for row, seq in enumerate(self._active):
            if seq.done:  # a sibling choice of a request that failed in this step
                continue
            if seq.gen.cancelled:
                seq.done = True
                self.stats["cancelled"] += 1
                continue
            if seq.gen.choice_stopped(seq.index):
                self._finish(seq, "", [], "stop")
                continue
            try:
                self._advance(seq, logits[row])
            except Exception as e:
                self._fail(seq.gen, e)
        keep = [i for i, s in enumerate(self._active) if not s.done]
        self.forward.keep(keep)
        self._active = [self._active[i] for i in keep]

    def _advance(self, seq: _Sequence, logits: np.ndarray) -> None:
        """Choose the next token of `seq` and tell its consumer what text it adds."""
        params = seq.gen.params
        adjusted = adjust_logits(logits, params, seq.counts)
        if seq.constraint is not None:  # llguidance masks a torch view of the same memory
            seq.constraint.mask(torch.from_numpy(adjusted))
        token = choose(adjusted, params, seq.generator)
        seq.n_generated += 1
        seq.counts[token] += 1
        seq.last_token = token
        self.stats["generated_tokens"] += 1
        lps: list[TokenLogprob] = []
        if params.logprobs:
            lps = [token_logprob(logits, token, params.top_logprobs)]

        if token in seq.gen.stop_token_ids:
            self._finish(seq, seq.detok.flush(), lps, "stop")
            return
        if seq.constraint is not None:
            seq.constraint.advance(token)
        text, hit = seq.stopper.feed(seq.detok.push(token))
        if hit:
            self._emit(seq, text, lps)
            self._finish(seq, "", [], "stop")
        elif seq.constraint is not None and seq.constraint.done:
            self._finish(seq, text + seq.detok.flush(), lps, "stop")
        elif seq.n_generated >= params.max_tokens:
            self._finish(seq, text + seq.detok.flush(), lps, "length")
        elif text or lps:
            self._emit(seq, text, lps)

    def _emit(self, seq: _Sequence, text: str, lps: list[TokenLogprob]) -> None:
        if text or lps:
            seq.gen.put(Delta(seq.index, text, lps))

    def _finish(self, seq: _Sequence, tail: str, lps: list[TokenLogprob], reason: str) -> None:
        """Release held-back text (cut at a stop string if one completes) and end the choice."""
        text, hit = seq.stopper.feed(tail)
        if not hit:
            text += seq.stopper.flush()
        self._emit(seq, text, lps)
        seq.gen.put(Finished(seq.index, "stop" if hit else reason, seq.n_generated))
        seq.done = True
        self.stats[f"finished_{'stop' if hit else reason}"] += 1


def _numpy(logits: torch.Tensor) -> np.ndarray:
    """Rows of logits as float32 numpy on the CPU, for the sampler (tunelab.inference.sampling)."""
    return logits.detach().to("cpu", torch.float32).numpy()
