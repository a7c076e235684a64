"""OpenAI's API-reference curl examples, run as written with only the base URL changed.

Each compat/curl/NAME.sh is the reference example verbatim; this driver swaps
the host for tunelab's, runs it with bash and checks the answer's shape.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Callable
from pathlib import Path
from typing import Any

from _report import API_KEY, BASE_URL, WORK_DIR, Flow, expect

flow = Flow("curl")
EXAMPLES = Path(__file__).resolve().parent.parent / "curl"
OPENAI = "https://api.openai.com/v1"
work = Path(WORK_DIR)


def run(name: str) -> str:
    script = (EXAMPLES / f"{name}.sh").read_text(encoding="utf-8").replace(OPENAI, BASE_URL)
    done = subprocess.run(
        ["bash", "-c", script.replace("curl ", "curl -sS --fail-with-body ", 1)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=work,
        env={**os.environ, "OPENAI_API_KEY": API_KEY},
    )
    expect(
        done.returncode == 0, f"curl exited {done.returncode}: {done.stdout[-300:]}{done.stderr}"
    )
    return done.stdout


def check(capability: str, name: str, test: Callable[[Any], bool]) -> None:
    @flow.step(capability, f"curl {name}.sh")
    def _() -> None:
        body = json.loads(run(name))
        expect(test(body), f"unexpected answer: {json.dumps(body)[:300]}")


def sse_chunks(text: str) -> list[dict[str, Any]]:
    lines = [x for x in text.splitlines() if x.startswith("data: ")]
    expect(lines[-1] == "data: [DONE]", "stream does not end with [DONE]")
    return [json.loads(x[6:]) for x in lines[:-1]]


(work / "mydata.jsonl").write_text(
    "".join(
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": f"Question {i}?"},
                    {"role": "assistant", "content": f"Answer {i}."},
                ]
            }
        )
        + "\n"
        for i in range(12)
    ),
    encoding="utf-8",
)
check(
    "chat",
    "chat",
    lambda b: (
        b["object"] == "chat.completion" and b["choices"][0]["message"]["role"] == "assistant"
    ),
)
check("chat", "chat_2023", lambda b: b["object"] == "chat.completion")
check(
    "completions",
    "completions",
    lambda b: b["object"] == "text_completion" and b["usage"]["completion_tokens"] <= 7,
)
check("completions", "completions_2022", lambda b: b["object"] == "text_completion")
check("embeddings", "embeddings", lambda b: isinstance(b["data"][0]["embedding"][0], float))
check("models", "models", lambda b: b["object"] == "list" and len(b["data"]) > 0)
check("models", "model_retrieve", lambda b: b["id"] == "gpt-3.5-turbo-instruct")
check("files", "files", lambda b: b["object"] == "file" and b["status"] == "processed")
check("fine-tune", "fine_tuning_jobs", lambda b: b["object"] == "list")
check("responses", "responses", lambda b: b["object"] == "response" and b["status"] == "completed")


@flow.step("stream", "curl chat_stream.sh")
def _() -> None:
    chunks = sse_chunks(run("chat_stream"))
    expect(chunks[0]["choices"][0]["delta"].get("role") == "assistant", "first delta has no role")
    last = chunks[-1]["choices"][0]
    expect(last["delta"] == {} and last["finish_reason"] is not None, f"last chunk {last}")
    for c in chunks[1:-1]:
        expect(None not in c["choices"][0]["delta"].values(), f"null key in {c}")
