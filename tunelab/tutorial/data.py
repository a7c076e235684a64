"""Steps 1-2: prepare messy spreadsheets with `prepare-data`, then upload the result."""

from __future__ import annotations

import json
from pathlib import Path

from tunelab.tutorial.session import Session, StepUnavailable, needs

MESSY_FILES = ["support_qa_gbk.csv", "support_qa.xlsx"]


def prepare(session: Session, name: str, output: Path) -> list[Path]:
    """Run `tunelab prepare-data -q` on a sample file (in-process); the files it wrote.

    Token statistics are skipped: they would load the chat model's tokenizer in this
    process, which the walk does not otherwise need.
    """
    with needs("`prepare-data`"):
        from tunelab.cli.data import ClickConsole
        from tunelab.data.prepare import Options
        from tunelab.data.prepare import prepare as run_prepare
        from tunelab.models.loading import chat_tokenizer_loader
        from tunelab.models.registry import Registry
        from tunelab.settings import Settings

    settings = Settings()
    session.console.print(
        f"[dim]$ tunelab prepare-data -f {session.example(name)} -q --no-stats -o {output}[/dim]"
    )
    outcome = run_prepare(
        Options(path=session.example(name), model=session.chat_model, output=output, stats=False),
        ClickConsole(quiet=True),
        chat_tokenizer_loader(
            Registry.for_settings(settings), settings.model_cache_dir, session.chat_model
        ),
    )
    if outcome.exit_code != 0 or not outcome.written:
        raise StepUnavailable(f"prepare-data could not prepare {name} (see its messages above)")
    return outcome.written


def step_prepare(session: Session) -> None:
    session.title(1, "prepare messy training data")
    session.show(
        "tunelab prepare-data -f examples/support_qa_gbk.csv -q\n"
        "tunelab prepare-data -f examples/support_qa.xlsx -q",
        "# prepare-data runs locally, before anything is uploaded (the legacy\n"
        "# `openai tools fine_tunes.prepare_data -f FILE -q`). It detects the GBK encoding,\n"
        "# lower-cases the `Prompt`/`Completion` headers, drops extra columns, empty and\n"
        "# duplicate rows, and adds a separator, a leading space and a stop sequence.",
    )
    written: list[Path] = []
    for name in MESSY_FILES:
        out = session.workdir / (Path(name).stem + "_prepared.jsonl")
        written += prepare(session, name, out)
    first = json.loads(written[0].read_text(encoding="utf-8").splitlines()[0])
    session.console.print(f"\nFirst prepared example of {written[0].name}:")
    session.console.print_json(data=first)
    session.state["prepared"] = written


def step_upload(session: Session) -> None:
    session.title(2, "upload the prepared file")
    prepared = session.state.get("prepared") or [session.workdir / "support_qa_gbk_prepared.jsonl"]
    path = prepared[0]
    if not path.exists():
        raise StepUnavailable("run step 1 (prepare) first: there is no prepared file to upload")
    session.show(
        f"tunelab files upload {path.name} --purpose fine-tune",
        f"""
from openai import OpenAI
client = OpenAI(base_url="http://127.0.0.1:8000/v1", api_key="tunelab")
f = client.files.create(file=open("{path.name}", "rb"), purpose="fine-tune")
print(f.id, f.status)   # "processed": the same validator as prepare-data passed it
""",
    )
    f = session.upload(path)
    session.console.print(
        f"uploaded [bold]{f.id}[/bold]  {f.filename}  {f.bytes} bytes  status={f.status}"
    )
    if f.status == "error":
        session.console.print(f"[red]problems:[/red] {f.status_details}")
    session.state["support_file"] = f.id
