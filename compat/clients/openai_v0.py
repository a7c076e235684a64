"""The 2023 tutorials, unmodified, with openai 0.28.1 (only api_base changed).

prepare_data -> File.create -> FineTune.create -> follow -> Completion with the
fine-tuned model -> Embedding.create / embeddings_utils -> ChatCompletion stream,
and the same with the legacy CLI (`openai api fine_tunes.create -t ... -m davinci`,
`fine_tunes.follow`, `completions.create`).
"""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import openai
from _report import API_KEY, BASE_URL, WORK_DIR, Flow, cosine, expect, wait_for

openai.api_base = BASE_URL
openai.api_key = API_KEY
flow = Flow("openai-0.28")
work = Path(WORK_DIR)
env = {**os.environ, "OPENAI_API_BASE": BASE_URL, "OPENAI_API_KEY": API_KEY}
CAPITALS = [
    ("France", "Paris"),
    ("Germany", "Berlin"),
    ("Italy", "Rome"),
    ("Spain", "Madrid"),
    ("Japan", "Tokyo"),
    ("Egypt", "Cairo"),
    ("Canada", "Ottawa"),
    ("Peru", "Lima"),
    ("Kenya", "Nairobi"),
    ("Norway", "Oslo"),
    ("Chile", "Santiago"),
    ("Cuba", "Havana"),
    ("Greece", "Athens"),
    ("Poland", "Warsaw"),
    ("Ireland", "Dublin"),
    ("Austria", "Vienna"),
]


def cli(*args: str, stdin: str = "") -> str:
    """Run the 0.28 `openai` command line as a user would type it."""
    done = subprocess.run(
        [str(Path(sys.executable).with_name("openai")), *args],
        input=stdin,
        capture_output=True,
        text=True,
        env=env,
        cwd=work,
        timeout=900,
    )
    print(done.stdout, done.stderr, sep="\n", flush=True)
    expect(
        done.returncode == 0,
        f"`openai {' '.join(args)}` exited {done.returncode}: "
        f"{(done.stderr or done.stdout).strip()[-300:]}",
    )
    return done.stdout


# -- the tutorial: prepare the data ----------------------------------------------------


@flow.step("prepare data", "openai tools fine_tunes.prepare_data -f data.csv -q")
def _() -> str:
    with open(work / "capitals.csv", "w", newline="", encoding="utf-8") as f:
        w = csv.writer(f)
        w.writerow(["prompt", "completion"])
        w.writerows(
            (f"What is the capital of {c}?", f"The capital is {city}.") for c, city in CAPITALS
        )
    out = cli("tools", "fine_tunes.prepare_data", "-f", "capitals.csv", "-q")
    prepared = work / "capitals_prepared.jsonl"
    expect(prepared.exists(), f"no {prepared.name} written:\n{out[-300:]}")
    flow.values["prepared"] = prepared
    return prepared.name


@flow.step("files", "openai.File.create(file=open(...), purpose='fine-tune')")
def _() -> str:
    (prepared,) = flow.need("prepared")
    with open(prepared, "rb") as fh:  # the tutorials pass open(...) inline
        f = openai.File.create(file=fh, purpose="fine-tune")
    expect(f["object"] == "file" and f["id"].startswith("file-"), f"not a file: {f}")
    flow.values["file_id"] = f["id"]
    wait_for(lambda: openai.File.retrieve(f["id"])["status"] == "processed", "file processing", 60)
    return f["id"]


@flow.step("files", "openai.File.list / File.download")
def _() -> None:
    (file_id, prepared) = flow.need("file_id", "prepared")
    expect(file_id in [f["id"] for f in openai.File.list()["data"]], "uploaded file not listed")
    expect(openai.File.download(file_id) == prepared.read_bytes(), "downloaded bytes differ")


# -- the tutorial: fine-tune and follow --------------------------------------------------


@flow.step("fine-tune", "openai.FineTune.create(training_file=..., model='davinci')")
def _() -> str:
    (file_id,) = flow.need("file_id")
    job = openai.FineTune.create(training_file=file_id, model="davinci", n_epochs=2)
    expect(job["object"] == "fine-tune" and job["id"].startswith("ft-"), f"not a fine-tune: {job}")
    expect(job["training_files"][0]["id"] == file_id, "training_files are not File objects")
    flow.values["ft_id"] = job["id"]
    return job["id"]


@flow.step("fine-tune", "openai.FineTune.stream_events (follow)")
def _() -> str:
    (ft_id,) = flow.need("ft_id")
    messages = [e["message"] for e in openai.FineTune.stream_events(ft_id)]
    expect(any("succeeded" in m for m in messages), f"no success event in {messages[-5:]}")
    return f"{len(messages)} events"


@flow.step("fine-tune", "openai.FineTune.retrieve / list / list_events")
def _() -> str:
    (ft_id,) = flow.need("ft_id")
    job = openai.FineTune.retrieve(ft_id)
    expect(job["status"] == "succeeded", f"status {job['status']}")
    expect(bool(job["fine_tuned_model"]), "no fine_tuned_model")
    expect(ft_id in [j["id"] for j in openai.FineTune.list()["data"]], "job not listed")
    events = openai.FineTune.list_events(id=ft_id)["data"]
    expect(all(e["object"] == "fine-tune-event" for e in events), "bad events")
    flow.values["ft_model"] = job["fine_tuned_model"]
    return job["fine_tuned_model"]


@flow.step("completions", "openai.Completion.create(model=<fine-tuned>, prompt=...)")
def _() -> str:
    (ft_model,) = flow.need("ft_model")
    r = openai.Completion.create(
        model=ft_model,
        prompt="What is the capital of France? ->",
        max_tokens=12,
        stop=["\n"],
        temperature=0,
    )
    expect(r["object"] == "text_completion", f"bad object {r['object']}")
    text = r["choices"][0]["text"]
    expect(isinstance(text, str), "no text")
    return repr(text)


@flow.step("models", "openai.Model.list / Model.retrieve(<fine-tuned>)")
def _() -> None:
    (ft_model,) = flow.need("ft_model")
    ids = [m["id"] for m in openai.Model.list()["data"]]
    expect(ft_model in ids, f"{ft_model} not in {ids}")
    expect(openai.Model.retrieve(ft_model)["id"] == ft_model, "retrieve answered another model")


# -- the tutorial: embeddings -------------------------------------------------------------


@flow.step("embeddings", "openai.Embedding.create(input=..., model='text-embedding-ada-002')")
def _() -> None:
    r = openai.Embedding.create(input="The food was delicious", model="text-embedding-ada-002")
    vec = r["data"][0]["embedding"]
    expect(len(vec) > 0 and isinstance(vec[0], float), "no vector")
    flow.values["vec"] = list(vec)


@flow.step("embeddings", "embeddings_utils.get_embedding(text, engine=...)")
def _() -> str:
    (vec,) = flow.need("vec")
    from openai.embeddings_utils import cosine_similarity, get_embedding

    e = get_embedding("The food was delicious", engine="text-embedding-ada-002")
    expect(cosine_similarity(e, vec) > 0.999, "engine path gives another vector")
    legacy = get_embedding("The food was delicious")  # default engine text-similarity-davinci-001
    expect(cosine(legacy, vec) > 0.999, "legacy engine name gives another vector")
    return f"{len(e)} dims"


# -- chat and engines ---------------------------------------------------------------------


@flow.step("chat", "openai.ChatCompletion.create(model='gpt-3.5-turbo')")
def _() -> str:
    r = openai.ChatCompletion.create(
        model="gpt-3.5-turbo", messages=[{"role": "user", "content": "Say hello"}], max_tokens=8
    )
    return repr(r["choices"][0]["message"]["content"])


@flow.step("stream", "ChatCompletion stream=True, delta.get('content', '')")
def _() -> str:
    text = ""
    finish = None
    for chunk in openai.ChatCompletion.create(
        model="gpt-3.5-turbo",
        messages=[{"role": "user", "content": "Count to three"}],
        max_tokens=8,
        stream=True,
    ):
        text += chunk["choices"][0]["delta"].get("content", "")
        finish = chunk["choices"][0]["finish_reason"] or finish
    expect(finish in ("stop", "length"), f"finish_reason {finish}")
    return repr(text)


@flow.step("stream", "Completion stream=True")
def _() -> str:
    parts = [
        c["choices"][0]["text"]
        for c in openai.Completion.create(
            model="text-davinci-003", prompt="Once upon a time", max_tokens=6, stream=True
        )
    ]
    return repr("".join(parts))


@flow.step("engines", "Engine.list / Completion.create(engine='text-davinci-003')")
def _() -> None:
    ids = [e["id"] for e in openai.Engine.list()["data"]]
    expect(len(ids) > 0, "no engines")
    r = openai.Completion.create(engine="text-davinci-003", prompt="Hello", max_tokens=4)
    expect(r["object"] == "text_completion", "engine completion")


@flow.step("tools", "ChatCompletion(functions=[...], function_call={'name': ...})")
def _() -> str:
    r = openai.ChatCompletion.create(
        model="gpt-3.5-turbo-0613",
        messages=[{"role": "user", "content": "What is the weather like in Boston?"}],
        functions=[
            {
                "name": "get_current_weather",
                "description": "Get the current weather in a given location",
                "parameters": {
                    "type": "object",
                    "properties": {
                        "location": {"type": "string", "description": "The city and state"},
                        "unit": {"type": "string", "enum": ["celsius", "fahrenheit"]},
                    },
                    "required": ["location"],
                },
            }
        ],
        function_call={"name": "get_current_weather"},
        max_tokens=40,
        temperature=0,
    )
    choice = r["choices"][0]
    call = choice["message"]["function_call"]  # the 2023 cookbook reads it like this
    # OpenAI said "function_call" (2023); for a call forced by name it now says "stop".
    reason = choice["finish_reason"]
    expect(reason in ("function_call", "stop"), f"finish_reason {reason}")
    args = json.loads(call["arguments"])
    expect(call["name"] == "get_current_weather" and "location" in args, f"call {call}")
    return call["arguments"]


@flow.step("refusals", "Completion(suffix=...) is refused naming 'suffix'")
def _() -> None:
    try:
        openai.Completion.create(
            model="text-davinci-003", prompt="def f(", suffix="):", max_tokens=4
        )
    except openai.error.InvalidRequestError as e:
        expect(e.param == "suffix", f"param {e.param}")
        return
    raise AssertionError("suffix was accepted")


# -- the same tutorial from the command line -------------------------------------------------


@flow.step("cli", "openai api fine_tunes.create -t <file> -m davinci (follows)")
def _() -> None:
    (prepared,) = flow.need("prepared")
    # The CLI offers to reuse the already-uploaded copy; Enter uploads anyway, as a user would.
    out = cli(
        "api",
        "fine_tunes.create",
        "-t",
        prepared.name,
        "-m",
        "davinci",
        "--n_epochs",
        "1",
        stdin="\n",
    )
    expect("Job complete! Status: succeeded" in out, f"did not finish: {out[-300:]}")
    line = next(x for x in out.splitlines() if "completions.create -m" in x)
    flow.values["cli_model"] = line.split("-m", 1)[1].split()[0]
    flow.values["cli_job"] = next(
        x.split("Created fine-tune:")[1].strip()
        for x in out.splitlines()
        if "Created fine-tune:" in x
    )


@flow.step("cli", "openai api fine_tunes.follow -i <id> / fine_tunes.list / fine_tunes.results")
def _() -> None:
    (job,) = flow.need("cli_job")
    out = cli("api", "fine_tunes.follow", "-i", job)
    expect("Job complete! Status: succeeded" in out, f"follow: {out[-300:]}")
    expect(job in cli("api", "fine_tunes.list"), "list")
    expect("step" in cli("api", "fine_tunes.results", "-i", job), "results csv")


@flow.step("cli", "openai api completions.create -m <fine-tuned> -p ...")
def _() -> str:
    (model,) = flow.need("cli_model")
    return cli(
        "api", "completions.create", "-m", model, "-p", "What is the capital of Peru? ->", "-M", "8"
    )[-200:]
