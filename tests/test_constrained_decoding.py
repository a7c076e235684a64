"""Constrained decoding below the HTTP layer: per-request isolation in the worker,
the tool-call output parser, and the one chat rendering training and serving share."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from tests.tiny_models import TINY_CHAT
from tunelab.data.chat_render import CALL_OPEN, format_call, functions_of, render_chat
from tunelab.data.encoding import IGNORE, encode_example
from tunelab.errors import TunelabError
from tunelab.inference.grammars import choices_grammar, lark_grammar
from tunelab.inference.handle import Delta, Failed, Finished, Generation, SamplingParams
from tunelab.inference.tool_calls import CallArguments, CallOpened, Content, OutputParser

CALL = format_call("get_weather", '{"city": "Paris"}')


@pytest.fixture(scope="module")
def worker(tiny_chat_dir: Path, model_cache: Path) -> Any:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from tunelab.inference.forward import TorchForward
    from tunelab.inference.worker import GenerationWorker

    model = AutoModelForCausalLM.from_pretrained(str(tiny_chat_dir)).eval()
    tok = AutoTokenizer.from_pretrained(str(tiny_chat_dir))
    w = GenerationWorker(TorchForward(model, 1), tok, name=TINY_CHAT, max_batch=8, max_queued=8)
    yield w
    w.close()


def _run(worker: Any, grammar: str | None, max_tokens: int) -> list[Any]:
    tok = worker.tokenizer
    text = tok.apply_chat_template(
        [{"role": "user", "content": "Hi"}], tokenize=False, add_generation_prompt=True
    )
    ids = tok(text, add_special_tokens=False)["input_ids"]
    gen = Generation(
        list(ids),
        SamplingParams(max_tokens=max_tokens, temperature=0, grammar=grammar),
        stop_token_ids=frozenset({tok.eos_token_id}),
    )
    worker.submit(gen)
    return gen  # type: ignore[return-value]


@pytest.mark.unit
def test_a_failing_grammar_fails_only_its_own_request(worker: Any) -> None:
    # Token 1 (<|im_start|>) is a special token constrained output never gets:
    # this grammar allows nothing, which fails its request at the first token.
    plain = _run(worker, None, 30)
    broken = _run(worker, lark_grammar("start: <[1]>\n"), 30)
    chosen = _run(worker, choices_grammar(["yes", "no thanks"]), 30)
    broken_events = list(broken.events())
    assert isinstance(broken_events[-1], Failed)
    assert isinstance(broken_events[-1].error, TunelabError)
    assert broken_events[-1].error.code == "constraint_failed"
    plain_events = list(plain.events())
    assert isinstance(plain_events[-1], Finished) and plain_events[-1].completion_tokens == 30
    text = "".join(e.text for e in chosen.events() if isinstance(e, Delta))
    assert text in ("yes", "no thanks")
    assert worker.stats["constraint_failures"] == 1


@pytest.mark.unit
def test_parser_streams_the_first_call_and_drops_a_repeat() -> None:
    other = format_call("get_time", "{}")
    text = f"{CALL}\n{other}\n{CALL}\n<tool"
    p = OutputParser(calls=True)
    events = [e for i in range(0, len(text), 4) for e in p.feed(text[i : i + 4])]
    opened = [e for e in events if isinstance(e, CallOpened)]
    assert [e.name for e in opened] == ["get_weather", "get_time"] and p.repeated
    args0 = "".join(e.text for e in events if isinstance(e, CallArguments) and e.index == 0)
    assert args0 == '{"city": "Paris"}'
    # the first call's arguments arrive in pieces, as they are written
    assert sum(isinstance(e, CallArguments) and e.index == 0 for e in events) > 1


@pytest.mark.unit
def test_parser_holds_back_only_what_could_start_a_call() -> None:
    p = OutputParser(calls=True)
    assert p.feed("<tool") == []
    assert p.feed("box> is") == [Content("<toolbox> is")]
    assert OutputParser(calls=True).feed(CALL_OPEN[:-1]) == []


@pytest.mark.unit
def test_training_renders_tool_turns_as_serving_does(model_cache: Path) -> None:
    from tunelab.models.loading import load_tokenizer
    from tunelab.models.registry import SMOLLM2, Registry

    tok = load_tokenizer(Registry.load().get(SMOLLM2), model_cache)
    tools = [{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]
    call = {
        "id": "c1",
        "type": "function",
        "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
    }
    messages = [
        {"role": "user", "content": "Weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [call]},
        {"role": "tool", "tool_call_id": "c1", "content": "21 C"},
        {"role": "assistant", "content": "It is 21 C."},
    ]
    enc = encode_example(tok, {"messages": messages, "tools": tools})
    trained = tok.decode(
        [t for t, lab in zip(enc.input_ids, enc.labels, strict=True) if lab != IGNORE]
    )
    assert CALL in trained and "It is 21 C." in trained
    assert "<tool_response>" not in trained and "Weather in Paris" not in trained
    # the prompt serving builds for the first turn is a prefix of the training text
    chat = render_chat(tok, messages[:1], functions_of(tools))
    prompt = tok.apply_chat_template(chat.messages, tokenize=False, add_generation_prompt=True)
    full = tok.decode(enc.input_ids)
    assert full.startswith(prompt) and full[len(prompt) :].startswith(CALL)
    assert json.dumps({"name": "get_weather", "parameters": {}}) in prompt


@pytest.mark.unit
def test_declared_properties_are_the_whole_list_unless_the_schema_says_otherwise(
    model_cache: Path,
) -> None:
    """A tool's parameters with `properties` and no `additionalProperties` admit only
    those keys (a small model otherwise invents keys until max_tokens); nested objects
    too; `"additionalProperties": true` still admits others."""
    import llguidance

    from tunelab.inference.constrained import ll_tokenizer
    from tunelab.inference.grammars import json_schema_grammar
    from tunelab.models.loading import load_tokenizer
    from tunelab.models.registry import SMOLLM2, Registry

    tok = load_tokenizer(Registry.load().get(SMOLLM2), model_cache)

    def accepts(schema: dict[str, Any], value: object) -> bool:
        matcher = llguidance.LLMatcher(ll_tokenizer(tok), json_schema_grammar(schema))
        text = json.dumps(value)
        ok = matcher.consume_tokens(tok(text, add_special_tokens=False)["input_ids"])
        return bool(ok) and not matcher.is_error() and matcher.is_accepting()

    city = {"type": "object", "properties": {"city": {"type": "string"}}}
    nested = {"type": "object", "properties": {"where": city}}
    assert accepts(city, {"city": "Paris"})
    assert not accepts(city, {"city": "Paris", "unit": "celsius"})
    assert not accepts(nested, {"where": {"city": "Paris", "x": 1}})
    assert accepts({**city, "additionalProperties": True}, {"city": "Paris", "unit": "c"})
    assert accepts({"type": "object"}, {"anything": [1, 2]})  # no list declared: any object
