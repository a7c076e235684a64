"""The training loop: setup, then one explicit loop over epochs and steps, then save.

Reads top to bottom like a recipe:
  1. threads, seeds, bf16 support;
  2. tokenizer and model (LoRA adapter on top of the base by default, or the whole
     model for method "full"; an existing adapter continues training);
  3. data: every example encoded once with the base model's chat template (for DPO,
     both answers of every pair, and the reference log-probabilities: tunelab.training.dpo);
  4. AdamW + warmup and linear/cosine decay, resumed from the newest checkpoint if any;
  5. per step: the step's examples packed into micro-batches, loss summed over trained
     tokens and divided by the step's trained-token count (gradient accumulation that
     weighs every token equally), clip, step; a metrics event (DPO: the mean DPO loss
     of the step's pairs, with reward margin and accuracy);
  6. every epoch end runs the full validation set (loss, token accuracy and, for a
     classification set, accuracy and weighted F1 of generated labels; DPO: loss,
     reward margin and accuracy) and saves a checkpoint carrying those metrics (the
     last `keep_checkpoints` are kept); a pause saves one mid-epoch.

Logits are computed only where a token is trained (`logits_to_keep` with indices):
the vocabulary projection is a large share of a small model's compute, and prompt
tokens never need it.
"""

from __future__ import annotations

import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from tunelab.hardware import bf16_fast
from tunelab.models.weights import Weights
from tunelab.training import checkpoints, distributed
from tunelab.training.classification import classification_metrics
from tunelab.training.config import TrainConfig, steps_per_epoch
from tunelab.training.data import Dataset, MicroBatch, Sample, encode_dataset, epoch_steps, pack
from tunelab.training.distributed import Group
from tunelab.training.dpo import REFERENCE_FILE, Preferences, encode_pairs
from tunelab.training.events import (
    CheckpointEvent,
    CheckpointRemovedEvent,
    Control,
    DoneEvent,
    EventWriter,
    MetricsEvent,
    PausedEvent,
    StepMetrics,
)


@dataclass
class Outcome:
    status: str  # "succeeded" | "cancelled" | "paused"
    step: int
    path: Path | None = None
    trained_tokens: int = 0


def seed_everything(seed: int) -> None:
    random.seed(seed)
    torch.manual_seed(seed)


def load_model(cfg: TrainConfig, resume_from: Path | None) -> tuple[Any, Any]:
    """(model ready to train, tokenizer). The model is a PeftModel for method lora.

    Weights stay fp32 and bf16 comes from autocast: on CPU, oneDNN's bf16 kernels
    are fast for autocast's freshly cast operands, while bf16-stored weights were
    measured slower here.
    """
    from tunelab.models.loading import load_causal_lm, load_tokenizer
    from tunelab.models.registry import ModelSpec

    spec = ModelSpec(
        id=cfg.base_model,
        kind="chat",
        source=cfg.model_source,
        gguf_file=cfg.gguf_file,
        options=cfg.model_options,
    )
    cache = Path(cfg.cache_dir or Path(cfg.output_dir) / "cache")
    tokenizer = load_tokenizer(spec, cache)
    if cfg.method == "full":
        if resume_from is not None:
            spec = ModelSpec(
                id=cfg.base_model, kind="chat", source=str(resume_from), options=cfg.model_options
            )
        model = load_causal_lm(spec, cache, device=cfg.device)
        return model.train(), tokenizer

    from peft import LoraConfig, PeftModel, get_peft_model

    base = load_causal_lm(spec, cache, device=cfg.device)
    adapter = resume_from or (Path(cfg.init_adapter) if cfg.init_adapter else None)
    if adapter is not None:
        return PeftModel.from_pretrained(base, str(adapter), is_trainable=True).train(), tokenizer
    lora = LoraConfig(
        r=cfg.lora_r,
        lora_alpha=cfg.lora_alpha,
        lora_dropout=cfg.lora_dropout,
        target_modules=cfg.lora_target_modules,
        task_type="CAUSAL_LM",
    )
    return get_peft_model(base, lora).train(), tokenizer


def lr_lambda(cfg: TrainConfig, total_steps: int) -> Any:
    warmup = max(1, int(cfg.warmup_ratio * total_steps)) if cfg.warmup_ratio > 0 else 0

    def factor(step: int) -> float:  # step counts completed optimizer steps
        if step < warmup:
            return (step + 1) / warmup
        progress = (step - warmup) / max(1, total_steps - warmup)
        if cfg.lr_schedule == "cosine":
            return 0.5 * (1 + math.cos(math.pi * progress))
        return max(0.0, 1 - progress)

    return factor


def forward_loss(model: Any, mb: MicroBatch, device: str, bf16: bool) -> tuple[torch.Tensor, int]:
    """(sum of token losses over trained positions, number of correct argmax predictions)."""
    keep = (mb.targets != -100).nonzero().squeeze(-1)
    with torch.autocast(device_type=device.split(":")[0], dtype=torch.bfloat16, enabled=bf16):
        out = model(
            input_ids=mb.input_ids.to(device),
            position_ids=mb.position_ids.to(device),
            use_cache=False,
            logits_to_keep=keep.to(device),
        )
    logits = out.logits[0].float()
    targets = mb.targets[keep].to(device)
    loss = F.cross_entropy(logits, targets, reduction="sum")
    correct = int((logits.argmax(-1) == targets).sum())
    return loss, correct


@torch.no_grad()
def evaluate(
    model: Any, data: Dataset, idx: list[int], cfg: TrainConfig, bf16: bool
) -> tuple[float, float]:
    """(mean token loss, mean token accuracy) over the given examples."""
    was_training = model.training
    model.eval()
    loss_sum, correct, n = 0.0, 0, 0
    for mb in pack([data.samples[i] for i in idx], cfg.micro_batch_tokens):
        if mb.n_targets == 0:
            continue
        loss, c = forward_loss(model, mb, cfg.device, bf16)
        loss_sum, correct, n = loss_sum + float(loss), correct + c, n + mb.n_targets
    model.train(was_training)
    return (loss_sum / n, correct / n) if n else (float("nan"), float("nan"))


def train(cfg: TrainConfig, events: EventWriter, control: Control) -> Outcome:
    """Train as configured; under torchrun, as one rank of a data-parallel group
    (tunelab.training.distributed)."""
    if cfg.device == "auto":
        cfg.device = "cuda" if torch.cuda.is_available() else "cpu"
    group, cfg.device = distributed.join(cfg.device)
    if group.world > 1 and cfg.objective == "dpo":
        raise ValueError("DPO jobs train in one process; run them without torchrun")
    outcome = _train(cfg, events, control, group)
    distributed.leave(group)
    return outcome


def _train(cfg: TrainConfig, events: EventWriter, control: Control, group: Group) -> Outcome:
    # -- 1. process setup (the processes of a group on one machine share its cores)
    cores = len(os.sched_getaffinity(0))
    torch.set_num_threads(cfg.num_threads or max(1, cores // group.local_world))
    bf16 = bf16_fast(cfg.device) if cfg.bf16 is None else cfg.bf16
    output_dir = Path(cfg.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    weights = checkpoints.published(cfg)
    resume = checkpoints.resume_point(output_dir, weights)
    seed_everything(cfg.seed)

    # -- 2. model
    model, tokenizer = load_model(cfg, resume)
    params = [p for p in model.parameters() if p.requires_grad]
    distributed.same_start(group, params)
    n_trainable = sum(p.numel() for p in params)
    events.message(
        f"Training {cfg.base_model} with {cfg.method} ({n_trainable:,} trainable parameters, "
        f"{'bf16 autocast' if bf16 else 'fp32'} on {cfg.device}, "
        f"{torch.get_num_threads()} threads"
        + (f", {group.world} processes)" if group.world > 1 else ")")
    )

    # -- 3. data
    train_data: Dataset | None = None
    valid_data: Dataset | None = None
    prefs: Preferences | None = None
    valid_prefs: Preferences | None = None
    if cfg.objective == "dpo":
        prefs, valid_prefs = _preferences(cfg, model, tokenizer, weights, bf16, resume is None)
        n = len(prefs.pairs)
    else:
        train_data, valid_data = _examples(cfg, tokenizer, events)
        n = len(train_data.samples)
    n_valid = (
        len(valid_prefs.pairs) if valid_prefs else len(valid_data.samples) if valid_data else 0
    )
    per_epoch = steps_per_epoch(n, cfg.batch_size)
    total_steps = per_epoch * cfg.n_epochs

    # -- 4. optimizer, schedule, resume
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, total_steps))
    step, trained_tokens, epoch_ckpts = 0, 0, []
    if resume is not None:
        state = checkpoints.load_state(resume)
        optimizer.load_state_dict(state["optimizer"])
        scheduler.load_state_dict(state["scheduler"])
        step, trained_tokens, epoch_ckpts = (
            state["step"],
            state["trained_tokens"],
            state["epoch_checkpoints"],
        )
        torch.set_rng_state(state["torch_rng"])
        events.message(f"Resumed from the checkpoint at step {step}")

    def save(at: int) -> Path:
        if not group.leader:  # every rank holds the same weights; one writes them
            return checkpoints.checkpoint_dir(output_dir, at)
        state = {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "step": at,
            "trained_tokens": trained_tokens,
            "epoch_checkpoints": epoch_ckpts,
            "torch_rng": torch.get_rng_state(),
        }
        path = checkpoints.save(output_dir, at, model, tokenizer, cfg.method, state)
        weights.publish(path)  # before its event: a registered checkpoint is published
        return path

    # -- 5. the loop
    started = time.monotonic()
    start_step = step
    valid_cursor = 0
    metrics: StepMetrics | None = None
    for epoch in range(step // per_epoch, cfg.n_epochs):
        for batch in epoch_steps(n, cfg.batch_size, cfg.seed, epoch)[step - epoch * per_epoch :]:
            request = distributed.agree(group, control.request() if group.leader else None)
            if request == "pause":
                path = save(step)
                events.emit(PausedEvent(step=step, path=str(path)))
                return Outcome("paused", step, path, trained_tokens)
            if request == "cancel":
                return Outcome("cancelled", step, None, trained_tokens)

            if prefs is not None:
                stats = prefs.step(model, batch)
                measured = {
                    "train_loss": stats.loss,
                    "train_chosen_reward": stats.chosen_reward,
                    "train_rejected_reward": stats.rejected_reward,
                    "train_reward_margin": stats.margin,
                    "train_reward_accuracy": stats.accuracy,
                }
                step_tokens = prefs.n_tokens(batch)
            else:
                assert train_data is not None
                measured, step_tokens = _supervised_step(
                    model, [train_data.samples[i] for i in group.share(batch)], cfg, bf16, group
                )
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            # The rate this step applies (the schedule moves on after it).
            learning_rate = float(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            trained_tokens += step_tokens

            # A validation batch every eval_interval steps; the whole validation set
            # at each epoch end, so every checkpoint carries its validation metrics.
            if n_valid and group.leader and step % cfg.eval_interval == 0:
                idx = [
                    (valid_cursor + i) % n_valid
                    for i in range(min(cfg.eval_batch_examples, n_valid))
                ]
                valid_cursor = (valid_cursor + len(idx)) % n_valid
                if valid_prefs is not None:
                    measured["valid_loss"] = valid_prefs.evaluate(model, idx).loss
                else:
                    assert valid_data is not None
                    loss, acc = evaluate(model, valid_data, idx, cfg, bf16)
                    measured.update(valid_loss=loss, valid_mean_token_accuracy=acc)
            if n_valid and group.leader and step % per_epoch == 0:
                measured.update(
                    _full_validation(cfg, model, tokenizer, valid_data, valid_prefs, bf16)
                )
            metrics = StepMetrics(
                step=step, total_steps=total_steps, learning_rate=learning_rate, **measured
            )
            events.emit(
                MetricsEvent(
                    metrics=metrics,
                    trained_tokens=trained_tokens,
                    elapsed_s=time.monotonic() - started,
                    steps_this_run=step - start_step,
                )
            )

        # -- 6. epoch end: checkpoint, keep the last few
        epoch_ckpts = [*epoch_ckpts, step][-cfg.keep_checkpoints :]
        path = save(step)
        events.emit(CheckpointEvent(step=step, path=str(path), metrics=metrics))
        for gone in checkpoints.prune(output_dir, epoch_ckpts, weights) if group.leader else []:
            events.emit(CheckpointRemovedEvent(step=gone.step, path=str(gone.path)))

    final = checkpoints.checkpoint_dir(output_dir, step)
    events.emit(DoneEvent(step=step, path=str(final), trained_tokens=trained_tokens))
    return Outcome("succeeded", step, final, trained_tokens)


def _examples(
    cfg: TrainConfig, tokenizer: Any, events: EventWriter
) -> tuple[Dataset, Dataset | None]:
    """The encoded training and validation examples, with a warning per lossy case."""
    train_data = encode_dataset(tokenizer, Path(cfg.training_file), cfg.max_length)
    valid_data = (
        encode_dataset(tokenizer, Path(cfg.validation_file), cfg.max_length)
        if cfg.validation_file
        else None
    )
    for name, d in (("training", train_data), ("validation", valid_data)):
        if d and d.n_truncated:
            events.message(
                f"{d.n_truncated} {name} example(s) longer than {cfg.max_length} tokens "
                "were truncated",
                level="warn",
            )
        if d and d.n_untrained:
            events.message(
                f"{d.n_untrained} {name} example(s) have no trained tokens", level="warn"
            )
    return train_data, valid_data


def _preferences(
    cfg: TrainConfig, model: Any, tokenizer: Any, weights: Weights, bf16: bool, fresh: bool
) -> tuple[Preferences, Preferences | None]:
    """The training (and validation) pairs with their reference log-probabilities.

    The reference is the model before its first step: for a new LoRA adapter the
    base with the adapter disabled, when continuing a fine-tune that fine-tune. It
    is computed once and published with the checkpoints, so a job resumed on
    another machine keeps it (recomputed from the resumed model it would be wrong)."""
    fresh_adapter = fresh and cfg.method == "lora" and cfg.init_adapter is None

    def load(path: str, name: str) -> Preferences:
        saved = Path(cfg.output_dir) / f"{name}_{REFERENCE_FILE}"
        had = weights.fetch_file(saved)
        prefs = Preferences.prepare(
            model,
            encode_pairs(tokenizer, Path(path), cfg.max_length),
            saved,
            beta=cfg.beta,
            micro_batch_tokens=cfg.micro_batch_tokens,
            device=cfg.device,
            bf16=bf16,
            fresh_adapter=fresh_adapter,
        )
        if not had:
            weights.publish_file(saved)
        return prefs

    train_prefs = load(cfg.training_file, "train")
    return train_prefs, load(cfg.validation_file, "valid") if cfg.validation_file else None


def _supervised_step(
    model: Any, samples: list[Sample], cfg: TrainConfig, bf16: bool, group: Group
) -> tuple[dict[str, float], int]:
    """Forward and backward over one step's examples (in a group: this rank's share,
    gradients then summed over the ranks): (metrics, tokens seen)."""
    micro = pack(samples, cfg.micro_batch_tokens)
    # Every rank divides by the whole step's count, so the summed gradient is the
    # one-process gradient.
    (all_targets,) = distributed.total(group, sum(mb.n_targets for mb in micro))
    n_targets = max(1, int(all_targets))
    loss_sum, correct = 0.0, 0
    for mb in micro:
        if mb.n_targets == 0:
            continue
        loss, c = forward_loss(model, mb, cfg.device, bf16)
        torch.autograd.backward(loss / n_targets)
        loss_sum, correct = loss_sum + float(loss.detach()), correct + c
    distributed.sum_gradients(group, [p for p in model.parameters() if p.requires_grad])
    loss_sum, n_correct, n_tokens = distributed.total(
        group, loss_sum, correct, sum(mb.n_tokens for mb in micro)
    )
    measured = {
        "train_loss": loss_sum / n_targets,
        "train_mean_token_accuracy": n_correct / n_targets,
    }
    return measured, int(n_tokens)


def _full_validation(
    cfg: TrainConfig,
    model: Any,
    tokenizer: Any,
    valid_data: Dataset | None,
    valid_prefs: Preferences | None,
    bf16: bool,
) -> dict[str, float]:
    """Every validation example's metrics (an epoch end's, so its checkpoint's)."""
    if valid_prefs is not None:
        stats = valid_prefs.evaluate(model, list(range(len(valid_prefs.pairs))))
        return {
            "full_valid_loss": stats.loss,
            "full_valid_reward_margin": stats.margin,
            "full_valid_reward_accuracy": stats.accuracy,
        }
    assert valid_data is not None and cfg.validation_file is not None
    loss, acc = evaluate(model, valid_data, list(range(len(valid_data.samples))), cfg, bf16)
    labels = classification_metrics(model, tokenizer, Path(cfg.validation_file), cfg.device)
    return {"full_valid_loss": loss, "full_valid_mean_token_accuracy": acc, **(labels or {})}
