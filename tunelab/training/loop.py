"""The training loop: setup, then one explicit loop over epochs and steps, then save.

Reads top to bottom like a recipe:
  1. threads, seeds, bf16 support;
  2. tokenizer and model (LoRA adapter on top of the base by default, or the whole
     model for method "full"; an existing adapter continues training);
  3. data: every example encoded once with the base model's chat template;
  4. AdamW + warmup and linear/cosine decay, resumed from the newest checkpoint if any;
  5. per step: the step's examples packed into micro-batches, loss summed over trained
     tokens and divided by the step's trained-token count (gradient accumulation that
     weighs every token equally), clip, step; a metrics event;
  6. every epoch end a checkpoint (the last `keep_checkpoints` are kept); a pause
     saves one mid-epoch; the end runs the full validation set (and, for a
     classification set, accuracy and weighted F1 of generated labels).

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
from tunelab.training import checkpoints
from tunelab.training.classification import classification_metrics
from tunelab.training.config import TrainConfig, steps_per_epoch
from tunelab.training.data import Dataset, MicroBatch, encode_dataset, epoch_steps, pack
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
    # -- 1. process setup
    if cfg.device == "auto":
        cfg.device = "cuda" if torch.cuda.is_available() else "cpu"
    torch.set_num_threads(cfg.num_threads or len(os.sched_getaffinity(0)))
    bf16 = bf16_fast(cfg.device) if cfg.bf16 is None else cfg.bf16
    output_dir = Path(cfg.output_dir)
    output_dir.mkdir(parents=True, exist_ok=True)
    resume = checkpoints.latest(output_dir)
    seed_everything(cfg.seed)

    # -- 2. model
    model, tokenizer = load_model(cfg, resume.path if resume else None)
    params = [p for p in model.parameters() if p.requires_grad]
    n_trainable = sum(p.numel() for p in params)
    events.message(
        f"Training {cfg.base_model} with {cfg.method} ({n_trainable:,} trainable parameters, "
        f"{'bf16 autocast' if bf16 else 'fp32'} on {cfg.device}, "
        f"{torch.get_num_threads()} threads)"
    )

    # -- 3. data
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
    n = len(train_data.samples)
    per_epoch = steps_per_epoch(n, cfg.batch_size)
    total_steps = per_epoch * cfg.n_epochs

    # -- 4. optimizer, schedule, resume
    optimizer = torch.optim.AdamW(params, lr=cfg.learning_rate, weight_decay=cfg.weight_decay)
    scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer, lr_lambda(cfg, total_steps))
    step, trained_tokens, epoch_ckpts = 0, 0, []
    if resume is not None:
        state = checkpoints.load_state(resume.path)
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
        state = {
            "optimizer": optimizer.state_dict(),
            "scheduler": scheduler.state_dict(),
            "step": at,
            "trained_tokens": trained_tokens,
            "epoch_checkpoints": epoch_ckpts,
            "torch_rng": torch.get_rng_state(),
        }
        return checkpoints.save(output_dir, at, model, tokenizer, cfg.method, state)

    # -- 5. the loop
    started = time.monotonic()
    start_step = step
    valid_cursor = 0
    metrics: StepMetrics | None = None
    for epoch in range(step // per_epoch, cfg.n_epochs):
        for batch in epoch_steps(n, cfg.batch_size, cfg.seed, epoch)[step - epoch * per_epoch :]:
            request = control.request()
            if request == "pause":
                path = save(step)
                events.emit(PausedEvent(step=step, path=str(path)))
                return Outcome("paused", step, path, trained_tokens)
            if request == "cancel":
                return Outcome("cancelled", step, None, trained_tokens)

            micro = pack([train_data.samples[i] for i in batch], cfg.micro_batch_tokens)
            n_targets = max(1, sum(mb.n_targets for mb in micro))
            loss_sum, correct = 0.0, 0
            for mb in micro:
                if mb.n_targets == 0:
                    continue
                loss, c = forward_loss(model, mb, cfg.device, bf16)
                torch.autograd.backward(loss / n_targets)
                loss_sum, correct = loss_sum + float(loss.detach()), correct + c
            torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
            # The rate this step applies (the schedule moves on after it).
            learning_rate = float(optimizer.param_groups[0]["lr"])
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad(set_to_none=True)
            step += 1
            trained_tokens += sum(mb.n_tokens for mb in micro)

            valid = full = None
            classification: dict[str, float] = {}
            if valid_data and valid_data.samples and step % cfg.eval_interval == 0:
                m = len(valid_data.samples)
                idx = [(valid_cursor + i) % m for i in range(min(cfg.eval_batch_examples, m))]
                valid_cursor = (valid_cursor + len(idx)) % m
                valid = evaluate(model, valid_data, idx, cfg, bf16)
            if step == total_steps and valid_data and valid_data.samples:
                full = evaluate(model, valid_data, list(range(len(valid_data.samples))), cfg, bf16)
                assert cfg.validation_file is not None
                classification = (
                    classification_metrics(model, tokenizer, Path(cfg.validation_file), cfg.device)
                    or {}
                )
            metrics = StepMetrics(
                step=step,
                total_steps=total_steps,
                train_loss=loss_sum / n_targets,
                train_mean_token_accuracy=correct / n_targets,
                learning_rate=learning_rate,
                valid_loss=valid[0] if valid else None,
                valid_mean_token_accuracy=valid[1] if valid else None,
                full_valid_loss=full[0] if full else None,
                full_valid_mean_token_accuracy=full[1] if full else None,
                classification_accuracy=classification.get("classification_accuracy"),
                classification_weighted_f1=classification.get("classification_weighted_f1"),
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
        for gone in checkpoints.prune(output_dir, epoch_ckpts):
            events.emit(CheckpointRemovedEvent(step=gone.step, path=str(gone.path)))

    final = checkpoints.checkpoint_dir(output_dir, step)
    events.emit(DoneEvent(step=step, path=str(final), trained_tokens=trained_tokens))
    return Outcome("succeeded", step, final, trained_tokens)
