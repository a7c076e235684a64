"""Step 7: context-grounded fine-tuning — train a model on prompts that carry retrieved
passages, then answer with embeddings-retrieved context inserted (the tutorial's
"combine fine-tuning and embeddings").

The training prompts are laid out by `tunelab.retrieval.grounding.build_grounded_messages`,
the very function the grounded-answer path (`/v1/responses` with `file_search`) uses,
and the passages come from the same search (`/v1/vector_stores/{id}/search`) with the
same number of results. So the fine-tuned model is trained on exactly the prompts it
is served with.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rich.table import Table

from tunelab.tutorial.retrieval import PASSAGES, build_store
from tunelab.tutorial.session import Session, StepUnavailable, needs, read_jsonl, write_jsonl

DEFAULT_K = PASSAGES


@dataclass
class QAPair:
    question: str
    answer: str
    must_contain: str | None = None  # the key fact; the answer cites the passage holding it


def load_pairs(path: Path) -> list[QAPair]:
    """question/answer JSONL rows (optional `must_contain`); ValueError names the bad line."""
    pairs = []
    with open(path, encoding="utf-8-sig") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise ValueError(f"{path.name} line {n}: not valid JSON ({e.msg})") from None
            if not isinstance(row, dict) or not all(
                isinstance(row.get(k), str) and row[k].strip() for k in ("question", "answer")
            ):
                raise ValueError(
                    f"{path.name} line {n}: expected an object with non-empty "
                    '"question" and "answer" strings'
                )
            pairs.append(QAPair(row["question"], row["answer"], row.get("must_contain")))
    if not pairs:
        raise ValueError(f"{path.name} has no question/answer pairs")
    return pairs


def retrieve(client: Any, store_id: str, question: str, k: int) -> list[Any]:
    """The passages the grounded-answer path would insert for this question."""
    with needs("retrieval (tunelab.retrieval.grounding)"):
        from tunelab.retrieval.grounding import Passage
    with needs("vector store search (/v1/vector_stores/{id}/search)"):
        hits = client.vector_stores.search(store_id, query=question, max_num_results=k)
    return [Passage(h.file_id, h.filename, "".join(part.text for part in h.content)) for h in hits]


def grounded_example(pair: QAPair, passages: list[Any]) -> dict[str, Any] | None:
    """A chat training example: the grounded prompt, then the answer.

    With a key fact, the answer cites the first passage that holds it, as the grounded
    prompt asks; if no retrieved passage holds it, training on the pair would teach the
    model to answer without support, so it is left out (None).
    """
    from tunelab.retrieval.grounding import build_grounded_messages

    answer = pair.answer.strip()
    if pair.must_contain:
        where = [
            n for n, p in enumerate(passages, 1) if pair.must_contain.lower() in p.text.lower()
        ]
        if not where:
            return None
        answer = f"{answer} [{where[0]}]"
    return {
        "messages": [
            *build_grounded_messages(pair.question, passages),
            {"role": "assistant", "content": answer},
        ]
    }


def build_grounded_data(
    client: Any, store_id: str, pairs: list[QAPair], k: int = DEFAULT_K
) -> tuple[list[dict[str, Any]], list[QAPair]]:
    """(training examples, pairs left out because retrieval missed their key fact)."""
    examples, missed = [], []
    for pair in pairs:
        ex = grounded_example(pair, retrieve(client, store_id, pair.question, k))
        if ex is None:
            missed.append(pair)
        else:
            examples.append(ex)
    return examples, missed


def grounded_answer(
    client: Any, model: str, store_id: str, question: str, k: int = DEFAULT_K
) -> str:
    with needs("grounded answers (/v1/responses with file_search)"):
        r = client.responses.create(
            model=model,
            input=question,
            temperature=0,
            max_output_tokens=40,
            tools=[{"type": "file_search", "vector_store_ids": [store_id], "max_num_results": k}],
        )
    return str(r.output_text).strip()


def score(
    client: Any, model: str, store_id: str, rows: list[dict[str, Any]], k: int = DEFAULT_K
) -> tuple[int, list[str]]:
    """(number of answers containing the row's `must_contain`, case-insensitively; the answers)."""
    answers = [grounded_answer(client, model, store_id, r["question"], k) for r in rows]
    right = sum(r["must_contain"].lower() in a.lower() for r, a in zip(rows, answers, strict=True))
    return right, answers


def step_grounded(session: Session) -> None:
    session.title(7, "fine-tuning + embeddings: train on prompts with retrieved context")
    store_id = session.state.get("store_id") or build_store(session)
    session.state["store_id"] = store_id
    out = session.workdir / "manual_qa_grounded.jsonl"
    session.show(
        f"tunelab ground-data -f examples/manual_qa_train.jsonl --store {store_id} -k {DEFAULT_K} -o {out.name}\n"
        f"tunelab jobs create -t {out.name} -m {session.chat_model} --suffix manual --n-epochs 1 "
        "--learning-rate-multiplier 3",
        f"""
from tunelab.retrieval.grounding import Passage, build_grounded_messages
# For each question/answer pair: the passages the grounded-answer path would insert...
hits = client.vector_stores.search(store.id, query=question, max_num_results={DEFAULT_K})
passages = [Passage(h.file_id, h.filename, h.content[0].text) for h in hits]
# ...laid out exactly as /v1/responses lays them out, followed by the answer:
example = {{"messages": build_grounded_messages(question, passages)
                        + [{{"role": "assistant", "content": answer}}]}}
# fine-tune on those examples, then ask with the same retrieval in front of the model:
r = client.responses.create(model=fine_tuned_model, input=question,
    tools=[{{"type": "file_search", "vector_store_ids": [store.id], "max_num_results": {DEFAULT_K}}}])
""",
    )
    pairs = load_pairs(session.example("manual_qa_train.jsonl"))
    examples, missed = build_grounded_data(session.client, store_id, pairs)
    if not examples:
        raise StepUnavailable(
            "no grounded example could be built: retrieval found none of the key facts"
        )
    write_jsonl(out, examples)
    session.console.print(
        f"{len(examples)} grounded training examples written to {out} "
        f"({len(missed)} left out: retrieval did not find their key fact)"
    )
    user = examples[0]["messages"][1]["content"]
    session.console.print(f"[dim]first prompt:[/dim]\n{user[:400]}{'…' if len(user) > 400 else ''}")
    from tunelab.tutorial.finetune import run_job

    f = session.upload(out)
    # One epoch at 3x the base learning rate: held-out 4/15 -> 6/15 (8/15 in a run on
    # fewer pairs) while keeping the job to a couple of minutes on a CPU.
    job = run_job(session, f.id, suffix="manual", n_epochs=1, learning_rate_multiplier=3.0)
    tuned = job.fine_tuned_model

    held = read_jsonl(session.example("manual_qa_heldout.jsonl"))
    session.console.print(
        f"\nscoring {len(held)} held-out questions (not in the training set), "
        f"each model answering from the same {DEFAULT_K} retrieved passages…"
    )
    base_right, base_answers = score(session.client, session.chat_model, store_id, held)
    tuned_right, tuned_answers = score(session.client, tuned, store_id, held)
    table = Table(title="held-out manual questions, same retrieved context", show_lines=True)
    for c in ("question", "key fact", "base", "grounded fine-tune"):
        table.add_column(c)
    for row, b, t in zip(held, base_answers, tuned_answers, strict=True):
        table.add_row(
            row["question"],
            row["must_contain"],
            _marked(b, row["must_contain"]),
            _marked(t, row["must_contain"]),
        )
    session.console.print(table)
    n = len(held)
    session.results["grounded"] = {"base": f"{base_right}/{n}", "fine-tuned": f"{tuned_right}/{n}"}
    session.console.print(
        f"correct on held-out questions: base {base_right}/{n} ({base_right / n:.0%}), "
        f"grounded fine-tune {tuned_right}/{n} ({tuned_right / n:.0%})"
    )


def _marked(answer: str, fact: str) -> str:
    return ("[green]✓[/green] " if fact.lower() in answer.lower() else "[red]✗[/red] ") + answer
