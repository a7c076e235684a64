"""The inference service: model ids and messages in, generated choices out.

Used by the chat/completions routes and by other features (the Responses API).
For those, the two convenience calls are:

    sampling = SamplingRequest(max_tokens=200, temperature=0)
    result = service.complete_chat(project, model, messages, sampling)
    result.text, result.finish_reason, result.prompt_tokens, result.completion_tokens

    stream = service.stream_chat(project, model, messages, sampling)
    for delta in stream:          # text deltas, never a split character
        ...
    stream.result                 # the ChatResult, once the iteration has ended
    stream.close()                # stop generating early (e.g. the client left)

Model ids resolve once per request through the catalog: a base model,
a LoRA fine-tune or checkpoint (served as an adapter on its shared base), or a
full fine-tune. Another project's model, or a deleted one, is `model_not_found`.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace

from tunelab import limits
from tunelab.data.chat_render import Function, render_chat
from tunelab.errors import InvalidRequest, TunelabError
from tunelab.inference.grammars import choices_grammar, json_schema_grammar
from tunelab.inference.handle import Delta, Failed, Finished, Generation, TokenLogprob
from tunelab.inference.output_plan import FREE_TEXT, OutputPlan
from tunelab.inference.params import SamplingRequest, sampling_params
from tunelab.inference.protocol import ChatEngine, Target, Tokenizer
from tunelab.inference.tool_calls import OutputParser, ParsedOutput, parsed
from tunelab.models.catalog import Catalog

ROLES = {"system", "developer", "user", "assistant", "tool", "function"}


@dataclass(frozen=True)
class ChatResult:
    text: str
    finish_reason: str
    prompt_tokens: int
    completion_tokens: int


@dataclass
class Choice:
    index: int
    text: str = ""
    finish_reason: str | None = None
    completion_tokens: int = 0
    logprobs: list[TokenLogprob] = field(default_factory=list)
    parser: OutputParser | None = None  # reads tool calls as the text arrives

    def output(self) -> ParsedOutput:
        """Content or tool calls (needs the plan's parser: Submitted sets it)."""
        assert self.parser is not None
        self.parser.finish()
        return parsed(self.parser)


def _raise(event: Failed) -> None:
    if isinstance(event.error, TunelabError):
        raise event.error
    raise TunelabError(f"Generation failed: {event.error}") from event.error


class Submitted:
    """A request in flight: its generation and what a response needs around it."""

    def __init__(
        self,
        model: str,
        prompt_ids: list[int],
        generation: Generation,
        tokenizer: Tokenizer,
        plan: OutputPlan = FREE_TEXT,
    ) -> None:
        self.model = model
        self.prompt_ids = prompt_ids
        self.generation = generation
        self.tokenizer = tokenizer
        self.plan = plan  # how to read the text back: content or tool calls

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt_ids)

    def _choices(self) -> list[Choice]:
        return [Choice(i, parser=self.plan.parser()) for i in range(self.generation.params.n)]

    def _apply(self, choices: list[Choice], event: Delta | Finished) -> None:
        c = choices[event.index]
        if isinstance(event, Delta):
            c.text += event.text
            c.logprobs.extend(event.logprobs)
            if c.parser is not None:
                c.parser.feed(event.text)
                if c.parser.repeated:  # a repeated call: nothing more to read
                    self.generation.stop_choice(event.index)
        else:
            c.finish_reason, c.completion_tokens = event.finish_reason, event.completion_tokens

    def collect(self) -> list[Choice]:
        """Block until every choice is done."""
        choices = self._choices()
        for event in self.generation.events():
            if isinstance(event, Failed):
                _raise(event)
            else:
                self._apply(choices, event)
        return choices

    async def acollect(self) -> list[Choice]:
        choices = self._choices()
        try:
            async for event in self.generation.aevents():
                if isinstance(event, Failed):
                    _raise(event)
                else:
                    self._apply(choices, event)
        finally:
            self.generation.cancel()  # no-op when finished; stops work if the client left
        return choices

    def cancel(self) -> None:
        self.generation.cancel()


class ChatStream(Iterator[str]):
    """Text deltas of one chat choice; `.result` holds the ChatResult afterwards."""

    def __init__(self, submitted: Submitted) -> None:
        self._submitted = submitted
        self._events = submitted.generation.events()
        self._text: list[str] = []
        self.result: ChatResult | None = None

    def __next__(self) -> str:
        for event in self._events:
            if isinstance(event, Failed):
                _raise(event)
            if isinstance(event, Delta) and event.text:
                self._text.append(event.text)
                return event.text
            if isinstance(event, Finished):
                self.result = ChatResult(
                    "".join(self._text),
                    event.finish_reason,
                    self._submitted.prompt_tokens,
                    event.completion_tokens,
                )
        raise StopIteration

    def close(self) -> None:
        self._submitted.cancel()


def _text_content(content: object, where: str) -> None:
    """Text, or text parts, of valid Unicode (batches skip the API's checks)."""
    if content is None:
        return
    if isinstance(content, str):
        limits.text(content, where)
        return
    if isinstance(content, list):
        for part in content:
            if not isinstance(part, dict) or part.get("type") not in ("text", "refusal"):
                kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                raise InvalidRequest(
                    f"{where} has a part of type {kind!r}; only text parts are supported.",
                    param=where,
                )
            limits.text(part.get("text", part.get("refusal", "")), where)
        return
    raise InvalidRequest(f"{where} must be a string or a list of text parts.", param=where)


def check_messages(messages: Sequence[Mapping[str, object]]) -> None:
    """OpenAI's rules for a conversation, tool turns included (contract §17.3)."""
    if not messages:
        raise InvalidRequest("'messages' must contain at least one message.", param="messages")
    pending: dict[str, int] = {}  # tool_call ids still waiting for their tool message
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise InvalidRequest(f"messages[{i}] must be an object.", param=f"messages[{i}]")
        role = m.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise InvalidRequest(
                f"messages[{i}].role is {role!r}; supported roles are system, developer, "
                "user, assistant, tool and function.",
                param=f"messages[{i}].role",
            )
        _text_content(m.get("content"), f"messages[{i}].content")
        if pending and role != "tool":
            first = next(iter(pending.values()))
            raise InvalidRequest(
                "An assistant message with 'tool_calls' must be followed by tool messages "
                "responding to each 'tool_call_id'. The following tool_call_ids did not have "
                f"response messages: {', '.join(pending)}",
                param=f"messages.[{first}].role",
            )
        if role == "tool":
            call_id = m.get("tool_call_id")
            if call_id not in pending:
                raise InvalidRequest(
                    "Invalid parameter: messages with role 'tool' must be a response to a "
                    "preceeding message with 'tool_calls'.",
                    param=f"messages.[{i}].role",
                )
            del pending[str(call_id)]
        calls = m.get("tool_calls")
        if role == "assistant" and calls:
            if not isinstance(calls, list):
                raise InvalidRequest(
                    f"messages[{i}].tool_calls must be a list.", param=f"messages[{i}].tool_calls"
                )
            for j, call in enumerate(calls):
                fn = call.get("function") if isinstance(call, dict) else None
                if (
                    not isinstance(call, dict)
                    or not isinstance(call.get("id"), str)
                    or not isinstance(fn, dict)
                    or not isinstance(fn.get("name"), str)
                    or not isinstance(fn.get("arguments"), str)
                ):
                    raise InvalidRequest(
                        f"messages[{i}].tool_calls[{j}] must be {{'id', 'type': 'function', "
                        "'function': {'name', 'arguments': <JSON string>}}.",
                        param=f"messages[{i}].tool_calls[{j}]",
                    )
                pending[call["id"]] = i


def chat_messages(messages: Sequence[Mapping[str, object]]) -> list[dict[str, object]]:
    """The messages checked, as plain dicts for `data.chat_render`."""
    check_messages(messages)
    return [dict(m) for m in messages]


class InferenceService:
    """Chat and text completions for a project's models, over one `ChatEngine`."""

    def __init__(
        self, engine: ChatEngine, catalog: Catalog, *, default_max_tokens: int | None = None
    ) -> None:
        self.engine = engine
        self.catalog = catalog
        self.default_max_tokens = default_max_tokens

    def target(self, project: str, model: str, *, fetch: bool = True) -> Target:
        """Resolve a model id for this project; refuse models that cannot chat. With
        `fetch`, a fine-tune's weights are on this machine when it returns (fetched
        from the blob store if another machine trained them); without, it only checks."""
        r = self.catalog.resolve(project, model)
        if r.base.kind != "chat":
            raise InvalidRequest(
                f"The model '{model}' is an {r.base.kind} model, not a chat model: use it "
                "with /v1/embeddings, or pick a chat model from /v1/models.",
                param="model",
                code="model_not_supported",
            )
        path = self.catalog.weights.local(r.path) if fetch and r.path is not None else r.path
        return Target(id=r.id, base=r.base, kind=r.kind, path=path)

    def _submit(
        self,
        target: Target,
        tokenizer: Tokenizer,
        prompt_ids: list[int],
        sampling: SamplingRequest,
        *,
        prompt_param: str,
        plan: OutputPlan = FREE_TEXT,
    ) -> Submitted:
        if plan.grammar is not None:
            sampling = replace(sampling, grammar=plan.grammar)
        params = sampling_params(
            sampling,
            prompt_tokens=len(prompt_ids),
            context_length=self.engine.context_length(target),
            vocab_size=len(tokenizer),
            prompt_param=prompt_param,
            default_max_tokens=self.default_max_tokens,
        )
        gen = self.engine.submit(target, prompt_ids, params)
        return Submitted(target.id, prompt_ids, gen, tokenizer, plan)

    @staticmethod
    def chat_prompt(
        tokenizer: Tokenizer,
        model: str,
        messages: Sequence[Mapping[str, object]],
        functions: Sequence[Function] = (),
    ) -> list[int]:
        """Prompt token ids, rendered exactly the way training renders chats (tools too)."""
        if not getattr(tokenizer, "chat_template", None):
            raise InvalidRequest(
                f"The model '{model}' has no chat template; call it with /v1/completions.",
                param="model",
            )
        chat = render_chat(tokenizer, chat_messages(messages), functions)
        text = tokenizer.apply_chat_template(
            chat.messages, tokenize=False, add_generation_prompt=True, **chat.template_kwargs
        )
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    def start_chat(
        self,
        project: str,
        model: str,
        messages: Sequence[Mapping[str, object]],
        sampling: SamplingRequest = SamplingRequest(),
        plan: OutputPlan = FREE_TEXT,
    ) -> Submitted:
        """Queue a chat completion (raises 400/404/503 before anything is generated).

        `plan` (inference.output_plan) offers tools and/or holds the answer to a
        JSON schema; the tools are shown to the model even when it may not call them."""
        target = self.target(project, model)
        tokenizer = self.engine.tokenizer(target)
        functions = plan.tools.functions if plan.tools is not None else ()
        prompt = self.chat_prompt(tokenizer, target.id, messages, functions)
        return self._submit(target, tokenizer, prompt, sampling, prompt_param="messages", plan=plan)

    def start_completion(
        self,
        project: str,
        model: str,
        prompt: str | list[int],
        sampling: SamplingRequest = SamplingRequest(),
    ) -> Submitted:
        """Queue a legacy text completion for one prompt (text or token ids)."""
        target = self.target(project, model)
        tok = self.engine.tokenizer(target)
        if isinstance(prompt, str):
            ids = list(tok(prompt, add_special_tokens=True)["input_ids"])
        else:
            ids = list(prompt)
            if any(not 0 <= t < len(tok) for t in ids):
                raise InvalidRequest(
                    f"'prompt' has token ids outside the vocabulary (0..{len(tok) - 1}).",
                    param="prompt",
                )
        if not ids:
            ids = [tok.eos_token_id]  # OpenAI: an empty prompt means "<|endoftext|>"
        return self._submit(target, tok, ids, sampling, prompt_param="prompt")

    def complete_chat(
        self,
        project: str,
        model: str,
        messages: Sequence[Mapping[str, object]],
        sampling: SamplingRequest = SamplingRequest(),
    ) -> ChatResult:
        sub = self.start_chat(project, model, messages, sampling)
        c = sub.collect()[0]
        return ChatResult(c.text, c.finish_reason or "stop", sub.prompt_tokens, c.completion_tokens)

    def stream_chat(
        self,
        project: str,
        model: str,
        messages: Sequence[Mapping[str, object]],
        sampling: SamplingRequest = SamplingRequest(),
    ) -> ChatStream:
        return ChatStream(self.start_chat(project, model, messages, sampling))

    def complete_constrained(
        self,
        project: str,
        model: str,
        messages: Sequence[Mapping[str, object]],
        *,
        json_schema: dict[str, object] | None = None,
        choices: Sequence[str] | None = None,
        sampling: SamplingRequest = SamplingRequest(),
    ) -> ChatResult:
        """A chat answer held to a JSON schema or to exactly one of `choices` (for graders
        and other features that must parse what the model says). The text always parses
        (`json.loads`) or is one of the choices, unless finish_reason is "length"."""
        if (json_schema is None) == (choices is None):
            raise ValueError("give exactly one of json_schema and choices")
        grammar = (
            json_schema_grammar(json_schema)
            if json_schema is not None
            else choices_grammar(choices or [])
        )
        return self.complete_chat(project, model, messages, replace(sampling, grammar=grammar))

    def close(self) -> None:
        self.engine.close()
