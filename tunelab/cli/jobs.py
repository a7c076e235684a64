"""`tunelab jobs ...` (fine-tuning jobs through the openai SDK) and `tunelab worker`."""

from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from tunelab.cli.client import api_errors, json_option, make_client, print_json, print_table, when

TERMINAL = ("succeeded", "failed", "cancelled")


@click.group("jobs")
def jobs_group() -> None:
    """Create, follow and manage fine-tuning jobs."""


def _file_id(client: Any, value: str) -> str:
    """An uploaded file id as is; a local path is uploaded first (purpose fine-tune)."""
    path = Path(value)
    if path.is_file():
        with open(path, "rb") as fh:
            f = client.files.create(file=(path.name, fh), purpose="fine-tune")
        click.echo(f"Uploaded {path} as {f.id}", err=True)
        if f.status == "error":
            raise click.ClickException(
                f"{path} is not a valid fine-tuning file: {f.status_details}"
            )
        return str(f.id)
    if value.startswith("file-"):
        return value
    raise click.ClickException(f"{value} is neither a local file nor a file id (file-...).")


@jobs_group.command("create")
@click.option("-t", "--training-file", required=True, help="Local JSONL path or uploaded file id.")
@click.option("-v", "--validation-file", default=None, help="Local JSONL path or uploaded file id.")
@click.option(
    "-m",
    "--model",
    default=None,
    help="Base model or an ft: model to continue (default: the default chat model).",
)
@click.option("--suffix", default=None, help="Up to 64 characters, part of the model name.")
@click.option("--n-epochs", type=int, default=None)
@click.option("--batch-size", type=int, default=None)
@click.option("--learning-rate-multiplier", type=float, default=None)
@click.option("--full", is_flag=True, help="Full fine-tuning instead of LoRA.")
@click.option(
    "--method",
    "method_type",
    type=click.Choice(["supervised", "dpo"]),
    default="supervised",
    show_default=True,
    help="dpo: preference pairs (input, preferred_output, non_preferred_output).",
)
@click.option("--beta", type=float, default=None, help="DPO only: the strength of the preference.")
@click.option("--seed", type=int, default=None)
@click.option(
    "--follow/--no-follow", default=True, show_default=True, help="Follow the job until it ends."
)
@json_option
@api_errors
def jobs_create(
    training_file: str,
    validation_file: str | None,
    model: str | None,
    suffix: str | None,
    n_epochs: int | None,
    batch_size: int | None,
    learning_rate_multiplier: float | None,
    full: bool,
    method_type: str,
    beta: float | None,
    seed: int | None,
    follow: bool,
    as_json: bool,
) -> None:
    """Start a fine-tuning job (uploads local files first).

    \b
    Example:
      tunelab jobs create -t train.jsonl -m smollm2-135m-instruct --suffix pirate --n-epochs 3
      tunelab jobs create -t pairs.jsonl --method dpo --beta 0.1
    """
    from tunelab.settings import Settings

    client = make_client()
    hp: dict[str, Any] = {
        k: v
        for k, v in {
            "n_epochs": n_epochs,
            "batch_size": batch_size,
            "learning_rate_multiplier": learning_rate_multiplier,
        }.items()
        if v is not None
    }
    if full:
        hp["method"] = "full"
    if beta is not None:
        if method_type != "dpo":
            raise click.UsageError("--beta is a DPO hyperparameter: add --method dpo.")
        hp["beta"] = beta
    params: dict[str, Any] = {
        "model": model or Settings().default_chat_model,
        "training_file": _file_id(client, training_file),
    }
    if validation_file:
        params["validation_file"] = _file_id(client, validation_file)
    if suffix:
        params["suffix"] = suffix
    if seed is not None:
        params["seed"] = seed
    if hp or method_type != "supervised":
        params["method"] = {"type": method_type, method_type: {"hyperparameters": hp}}
    job = client.fine_tuning.jobs.create(**params)
    if as_json:
        print_json(job)
    else:
        click.echo(f"Created fine-tuning job: {job.id}")
    if follow and not as_json:
        _follow(client, job.id)


def _follow(client: Any, job_id: str) -> None:
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    seen: set[str] = set()
    with Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("step {task.fields[step]}"),
        TextColumn("loss {task.fields[loss]}"),
        TimeRemainingColumn(),
    ) as progress:
        task = progress.add_task("waiting", total=None, loss="-", step="-")
        while True:
            job = client.fine_tuning.jobs.retrieve(job_id)
            events = list(client.fine_tuning.jobs.list_events(job_id, limit=100).data)
            for e in reversed(events):
                if e.id in seen:
                    continue
                seen.add(e.id)
                if e.type == "metrics" and e.data:
                    progress.update(
                        task,
                        completed=e.data["step"],
                        total=e.data["total_steps"],
                        loss=f"{e.data['train_loss']:.3f}",
                        step=f"{e.data['step']}/{e.data['total_steps']}",
                    )
                else:
                    progress.console.print(f"[{when(e.created_at)}] {e.message}")
            progress.update(task, description=job.status)
            if job.status in TERMINAL:
                break
            time.sleep(1.0)
    if job.status == "succeeded":
        click.echo(f"Job complete! Fine-tuned model: {job.fine_tuned_model}")
        click.echo(f'Try it:  tunelab chat -m {job.fine_tuned_model} "Hello!"')
    elif job.status == "failed":
        click.echo(f"Job failed: {job.error.message if job.error else 'unknown error'}", err=True)
        sys.exit(1)
    else:
        click.echo(f"Job {job.status}.")


@jobs_group.command("follow")
@click.argument("job_id")
@api_errors
def jobs_follow(job_id: str) -> None:
    """Show a job's events and a progress bar (step, loss, ETA) until it ends."""
    _follow(make_client(), job_id)


@jobs_group.command("list")
@click.option("--limit", type=int, default=20, show_default=True)
@json_option
@api_errors
def jobs_list(limit: int, as_json: bool) -> None:
    """List your project's fine-tuning jobs, newest first."""
    items = make_client().fine_tuning.jobs.list(limit=limit).data
    if as_json:
        print_json([j.model_dump() for j in items])
        return
    print_table(
        ["id", "model", "status", "fine_tuned_model", "created"],
        [(j.id, j.model, j.status, j.fine_tuned_model, when(j.created_at)) for j in items],
    )


@jobs_group.command("get")
@click.argument("job_id")
@api_errors
def jobs_get(job_id: str) -> None:
    """Show one job as JSON."""
    print_json(make_client().fine_tuning.jobs.retrieve(job_id))


@jobs_group.command("events")
@click.argument("job_id")
@click.option("--limit", type=int, default=100, show_default=True)
@json_option
@api_errors
def jobs_events(job_id: str, limit: int, as_json: bool) -> None:
    """A job's events, oldest first."""
    events = list(reversed(make_client().fine_tuning.jobs.list_events(job_id, limit=limit).data))
    if as_json:
        print_json([e.model_dump() for e in events])
        return
    for e in events:
        click.echo(f"[{when(e.created_at)}] {e.level:5} {e.message}")


def _state_command(name: str, doc: str) -> click.Command:
    @click.argument("job_id")
    @api_errors
    def command(job_id: str) -> None:
        job = getattr(make_client().fine_tuning.jobs, name)(job_id)
        click.echo(f"{job.id}: {job.status}")

    command.__doc__ = doc
    return jobs_group.command(name)(command)


_state_command("cancel", "Cancel a job; training stops within seconds and no model is created.")
_state_command("pause", "Pause a running job; it keeps its last checkpoint.")
_state_command("resume", "Resume a paused job from where it stopped.")


@jobs_group.command("checkpoints")
@click.argument("job_id")
@json_option
@api_errors
def jobs_checkpoints(job_id: str, as_json: bool) -> None:
    """A job's checkpoints (each one is a model you can call)."""
    items = make_client().fine_tuning.jobs.checkpoints.list(job_id).data
    if as_json:
        print_json([c.model_dump() for c in items])
        return
    print_table(
        ["step", "model", "train_loss", "valid_loss"],
        [
            (
                c.step_number,
                c.fine_tuned_model_checkpoint,
                c.metrics.train_loss,
                c.metrics.valid_loss,
            )
            for c in items
        ],
    )


@jobs_group.command("results")
@click.argument("job_id")
@api_errors
def jobs_results(job_id: str) -> None:
    """Print the results CSV of a finished job (step, losses, accuracies)."""
    client = make_client()
    job = client.fine_tuning.jobs.retrieve(job_id)
    if not job.result_files:
        raise click.ClickException(f"Job {job_id} has no results file yet (status: {job.status}).")
    click.echo(client.files.content(job.result_files[0]).text, nl=False)


@click.command("worker")
@click.option(
    "--data-dir",
    type=click.Path(path_type=Path),
    default=None,
    help="Same data dir (and database) as the server.",
)
def worker(data_dir: Path | None) -> None:
    """Run a worker against the server's database (more workers, more work at once).

    It trains fine-tuning jobs and, beside them, grades eval runs, runs batches and
    indexes vector-store files: all claimed from the database, so any number of
    workers and API replicas share the work and each piece is done once.

    \b
    Example:  TUNELAB_DATA_DIR=~/.tunelab tunelab worker
    """
    import signal
    import threading

    from tunelab.runtime import build_runtime
    from tunelab.settings import Settings

    settings = Settings.from_env(data_dir=data_dir)
    runtime = build_runtime(settings, embedded_worker=False)
    w = runtime.new_worker()
    evals = runtime.new_eval_runner()  # eval runs, in a thread beside the job worker
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    click.echo(f"tunelab worker {w.id} polling {settings.db_url}", err=True)
    runtime.start()  # ingestion and batches (the job worker and evals are started here)
    evals.start()
    try:
        w.run(stop)
    except KeyboardInterrupt:
        w.shutdown()
    finally:
        evals.close()
        runtime.close()


commands = [jobs_group, worker]
