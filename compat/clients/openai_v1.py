"""Today's SDK flow (openai 1.x and the version tunelab pins), only base_url changed.

files -> fine_tuning.jobs -> events/checkpoints -> chat (+ stream) -> embeddings ->
vector stores -> responses (+ stored, previous_response_id) -> uploads -> batches.
"""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Literal

import openai
from _report import API_KEY, BASE_URL, WORK_DIR, Flow, expect, wait_for
from pydantic import BaseModel

client = openai.OpenAI(base_url=BASE_URL, api_key=API_KEY)
flow = Flow("openai-" + openai.__version__)
work = Path(WORK_DIR)
FACTS = [
    ("What does the Zephyr-9 beep mean?", "Three short beeps mean the filter needs cleaning."),
    ("How do I reset the Zephyr-9?", "Hold the power button for ten seconds."),
    ("What colour is the Zephyr-9 status light when charging?", "It glows amber while charging."),
    ("How long does the Zephyr-9 battery last?", "About forty minutes on one charge."),
    ("Can the Zephyr-9 clean carpets?", "Yes, switch to carpet mode with the brush icon."),
    ("Where is the Zephyr-9 dust bin?", "Under the top lid, behind the handle."),
    ("Is the Zephyr-9 waterproof?", "No, keep it away from water."),
    ("How heavy is the Zephyr-9?", "It weighs two point four kilograms."),
    ("Which app controls the Zephyr-9?", "The ZephyrHome app."),
    ("How often should I replace the Zephyr-9 filter?", "Every three months."),
    ("Does the Zephyr-9 map rooms?", "Yes, it maps up to five rooms."),
    ("What is the Zephyr-9 warranty?", "Two years from purchase."),
]


@flow.step("files", "files.create(purpose='fine-tune') / retrieve / list / content")
def _() -> str:
    lines = [
        {
            "messages": [
                {"role": "system", "content": "You are the Zephyr-9 support bot."},
                {"role": "user", "content": q},
                {"role": "assistant", "content": a},
            ]
        }
        for q, a in FACTS
    ]
    data = "".join(json.dumps(x) + "\n" for x in lines).encode()
    (work / "train.jsonl").write_bytes(data)
    with open(work / "train.jsonl", "rb") as fh:
        f = client.files.create(file=fh, purpose="fine-tune")
    expect(f.status == "processed", f"status {f.status}: {f.status_details}")
    expect(client.files.retrieve(f.id).filename == "train.jsonl", "filename")
    expect(f.id in [x.id for x in client.files.list(purpose="fine-tune")], "not listed")
    expect(client.files.content(f.id).read() == data, "content differs")
    flow.values["file_id"] = f.id
    return f.id


@flow.step("fine-tune", "fine_tuning.jobs.create(model='gpt-4o-mini-2024-07-18')")
def _() -> str:
    (file_id,) = flow.need("file_id")
    job = client.fine_tuning.jobs.create(
        training_file=file_id,
        model="gpt-4o-mini-2024-07-18",
        suffix="zephyr",
        hyperparameters={"n_epochs": 1},
    )
    expect(job.status in ("validating_files", "queued"), f"status {job.status}")
    flow.values["job_id"] = job.id
    return job.id


@flow.step("fine-tune", "fine_tuning.jobs.retrieve until succeeded / list")
def _() -> str:
    (job_id,) = flow.need("job_id")
    job = wait_for(
        lambda: (
            (j := client.fine_tuning.jobs.retrieve(job_id)).status
            in ("succeeded", "failed", "cancelled")
            and j
        ),
        "fine-tuning job",
        900,
        every=2,
    )
    expect(job.status == "succeeded", f"job {job.status}: {job.error}")
    expect(job_id in [j.id for j in client.fine_tuning.jobs.list(limit=50)], "not listed")
    flow.values["ft_model"] = job.fine_tuned_model
    return job.fine_tuned_model


@flow.step("fine-tune", "fine_tuning.jobs.list_events / checkpoints.list")
def _() -> str:
    (job_id, _model) = flow.need("job_id", "ft_model")
    events = list(client.fine_tuning.jobs.list_events(job_id, limit=100))
    expect(
        any(
            e.message.startswith("The job has successfully completed")
            or "succeeded" in e.message
            or e.message == "Fine-tuning job successfully completed"
            for e in events
        ),
        f"no completion event in {[e.message for e in events][:5]}",
    )
    cps = list(client.fine_tuning.jobs.checkpoints.list(job_id))
    expect(len(cps) >= 1, "no checkpoints")
    return f"{len(events)} events, {len(cps)} checkpoints"


@flow.step("chat", "chat.completions.create(model=<fine-tuned>)")
def _() -> str:
    (model,) = flow.need("ft_model")
    r = client.chat.completions.create(
        model=model,
        messages=[{"role": "user", "content": "How do I reset the Zephyr-9?"}],
        max_tokens=16,
        temperature=0,
    )
    expect(r.model == model, f"model echoed {r.model}")
    return repr(r.choices[0].message.content)


@flow.step("chat", "chat.completions.create(model='gpt-4o')")
def _() -> str:
    r = client.chat.completions.create(
        model="gpt-4o",
        messages=[
            {"role": "developer", "content": "Be brief."},
            {"role": "user", "content": "Hello!"},
        ],
        max_tokens=8,
    )
    return repr(r.choices[0].message.content)


@flow.step("stream", "chat.completions.create(stream=True, include_usage)")
def _() -> str:
    chunks = list(
        client.chat.completions.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": "Count to five"}],
            max_tokens=8,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    expect(chunks[-1].choices == [] and chunks[-1].usage is not None, "no usage chunk")
    expect(chunks[-2].choices[0].finish_reason is not None, "no finish chunk")
    return repr("".join(c.choices[0].delta.content or "" for c in chunks if c.choices))


@flow.step("stream", "chat.completions.stream() helper events")
def _() -> str:
    text = ""
    with client.chat.completions.stream(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "Hi"}], max_tokens=6
    ) as s:
        for event in s:
            if event.type == "content.delta":
                text += event.delta
    expect(bool(text), "no content.delta events")
    return repr(text)


class City(BaseModel):
    city: str
    country: Literal["France", "Italy", "Spain", "Germany"]


WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The current weather in a city",
        "strict": True,
        "parameters": {
            "type": "object",
            "properties": {"city": {"type": "string"}, "unit": {"enum": ["celsius", "fahrenheit"]}},
            "required": ["city", "unit"],
            "additionalProperties": False,
        },
    },
}


@flow.step("structured", "chat.completions.parse(response_format=<pydantic model>)")
def _() -> str:
    r = client.chat.completions.parse(
        model="gpt-4o-mini",
        messages=[{"role": "user", "content": "Which city is the Eiffel Tower in?"}],
        response_format=City,
        temperature=0,
        max_tokens=40,
    )
    parsed = r.choices[0].message.parsed
    expect(isinstance(parsed, City), f"parsed {parsed!r}")
    expect("Paris" in parsed.city, f"city {parsed.city!r}")  # type: ignore[union-attr]
    return repr(parsed)


@flow.step("tools", "chat.completions.stream(tools=[strict]) == create(tools=...)")
def _() -> str:
    kw = {
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "What is the weather in Paris, in celsius?"}],
        "tools": [WEATHER],
        "tool_choice": "required",
        "parallel_tool_calls": False,  # one call: greedy SmolLM2 may otherwise add a second
        "temperature": 0,
        "max_tokens": 80,
    }
    plain = client.chat.completions.create(**kw).choices[0]  # type: ignore[call-overload]
    with client.chat.completions.stream(**kw) as stream:  # type: ignore[arg-type]
        final = stream.get_final_completion().choices[0]
    expect(plain.finish_reason == final.finish_reason == "tool_calls", final.finish_reason)
    got = [(c.function.name, c.function.arguments) for c in final.message.tool_calls or []]
    want = [(c.function.name, c.function.arguments) for c in plain.message.tool_calls or []]
    expect(got == want, f"streamed {got} != plain {want}")
    args = json.loads(got[0][1])
    expect(got[0][0] == "get_weather" and "Paris" in args["city"], f"call {got[0]}")
    # strict tools: the stream helper parses the arguments as well
    expect(final.message.tool_calls[0].function.parsed_arguments == args, "parsed_arguments")  # type: ignore[index]
    return got[0][1]


@flow.step("completions", "completions.create(model='gpt-3.5-turbo-instruct')")
def _() -> str:
    r = client.completions.create(
        model="gpt-3.5-turbo-instruct", prompt="Say this is a test", max_tokens=7, temperature=0
    )
    return repr(r.choices[0].text)


@flow.step("embeddings", "embeddings.create(model='text-embedding-3-small')")
def _() -> str:
    r = client.embeddings.create(model="text-embedding-3-small", input=["hello", "world"])
    expect(len(r.data) == 2 and len(r.data[0].embedding) > 0, "no vectors")
    return f"{len(r.data[0].embedding)} dims"


@flow.step("models", "models.list / models.retrieve('gpt-4o')")
def _() -> None:
    ids = [m.id for m in client.models.list()]
    expect(len(ids) > 0, "no models")
    expect(client.models.retrieve("gpt-4o").id == "gpt-4o", "alias retrieve")


@flow.step("vector stores", "vector_stores.create / files.upload_and_poll / search")
def _() -> str:
    store = client.vector_stores.create(name="zephyr manual")
    manual = "\n\n".join(f"{q}\n{a}" for q, a in FACTS).encode()
    vf = client.vector_stores.files.upload_and_poll(
        vector_store_id=store.id, file=("manual.txt", io.BytesIO(manual))
    )
    expect(vf.status == "completed", f"status {vf.status}")
    hits = client.vector_stores.search(store.id, query="how long does the battery last")
    expect(any("forty minutes" in c.text for h in hits for c in h.content), "battery not found")
    flow.values["store_id"] = store.id
    return store.id


@flow.step("responses", "responses.create(tools=[file_search])")
def _() -> str:
    (store_id,) = flow.need("store_id")
    r = client.responses.create(
        model="gpt-4o-mini",
        input="How long does the Zephyr-9 battery last?",
        tools=[{"type": "file_search", "vector_store_ids": [store_id]}],
        max_output_tokens=24,
    )
    # max_output_tokens may cut the answer: "incomplete" is the honest status then.
    expect(r.status in ("completed", "incomplete") and r.output_text, f"status {r.status}")
    flow.values["response_id"] = r.id
    return repr(r.output_text)


@flow.step("responses", "responses previous_response_id / retrieve / input_items / delete")
def _() -> None:
    (first,) = flow.need("response_id")
    r = client.responses.create(
        model="gpt-4o-mini", input="Say it again.", previous_response_id=first, max_output_tokens=8
    )
    expect(r.previous_response_id == first, "previous_response_id not echoed")
    expect(client.responses.retrieve(r.id).id == r.id, "retrieve")
    items = list(client.responses.input_items.list(r.id))
    expect(len(items) >= 1, "no input items")
    client.responses.delete(r.id)
    try:
        client.responses.retrieve(r.id)
    except openai.NotFoundError:
        return
    raise AssertionError("deleted response still retrievable")


@flow.step("uploads", "uploads.upload_file_chunked(...)")
def _() -> str:
    (data_path,) = [work / "train.jsonl"]
    data = data_path.read_bytes()
    up = client.uploads.upload_file_chunked(
        file=data,
        filename="big.jsonl",
        bytes=len(data),
        mime_type="text/jsonl",
        purpose="fine-tune",
        part_size=max(1, len(data) // 3),
    )
    expect(up.status == "completed" and up.file is not None, f"upload {up.status}")
    expect(client.files.content(up.file.id).read() == data, "assembled bytes differ")
    return up.file.id


@flow.step("batches", "batches.create(/v1/embeddings) -> output file matches direct calls")
def _() -> str:
    texts = [f"line {i} about the Zephyr-9" for i in range(20)]
    lines = [
        {
            "custom_id": f"r{i}",
            "method": "POST",
            "url": "/v1/embeddings",
            "body": {"model": "text-embedding-3-small", "input": t, "encoding_format": "float"},
        }
        for i, t in enumerate(texts)
    ]
    f = client.files.create(
        file=("batch.jsonl", "".join(json.dumps(x) + "\n" for x in lines).encode()), purpose="batch"
    )
    b = client.batches.create(
        input_file_id=f.id, endpoint="/v1/embeddings", completion_window="24h"
    )
    b = wait_for(
        lambda: (
            (x := client.batches.retrieve(b.id)).status
            in ("completed", "failed", "expired", "cancelled")
            and x
        ),
        "batch",
        300,
    )
    expect(b.status == "completed", f"batch {b.status}: {b.errors}")
    expect(b.request_counts.completed == len(texts), f"counts {b.request_counts}")
    out = [json.loads(x) for x in client.files.content(b.output_file_id).text.splitlines()]
    direct = client.embeddings.create(model="text-embedding-3-small", input=texts).data
    by_id = {o["custom_id"]: o["response"]["body"]["data"][0]["embedding"] for o in out}
    for i, d in enumerate(direct):
        expect(
            max(abs(x - y) for x, y in zip(by_id[f"r{i}"], d.embedding, strict=True)) < 1e-5,
            f"r{i} differs",
        )
    return b.id
