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
from dataclasses import dataclass, field

from tunelab import limits
from tunelab.errors import InvalidRequest, TunelabError
from tunelab.inference.handle import Delta, Failed, Finished, Generation, TokenLogprob
from tunelab.inference.params import SamplingRequest, sampling_params
from tunelab.inference.protocol import ChatEngine, Target, Tokenizer
from tunelab.models.catalog import Catalog

ROLES = {"system", "developer", "user", "assistant"}


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


def _raise(event: Failed) -> None:
    if isinstance(event.error, TunelabError):
        raise event.error
    raise TunelabError(f"Generation failed: {event.error}") from event.error


class Submitted:
    """A request in flight: its generation and what a response needs around it."""

    def __init__(
        self, model: str, prompt_ids: list[int], generation: Generation, tokenizer: Tokenizer
    ) -> None:
        self.model = model
        self.prompt_ids = prompt_ids
        self.generation = generation
        self.tokenizer = tokenizer

    @property
    def prompt_tokens(self) -> int:
        return len(self.prompt_ids)

    def _apply(self, choices: list[Choice], event: Delta | Finished) -> None:
        c = choices[event.index]
        if isinstance(event, Delta):
            c.text += event.text
            c.logprobs.extend(event.logprobs)
        else:
            c.finish_reason, c.completion_tokens = event.finish_reason, event.completion_tokens

    def collect(self) -> list[Choice]:
        """Block until every choice is done."""
        choices = [Choice(i) for i in range(self.generation.params.n)]
        for event in self.generation.events():
            if isinstance(event, Failed):
                _raise(event)
            else:
                self._apply(choices, event)
        return choices

    async def acollect(self) -> list[Choice]:
        choices = [Choice(i) for i in range(self.generation.params.n)]
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


def chat_messages(messages: Sequence[Mapping[str, object]]) -> list[dict[str, str]]:
    """Plain {role, content} dicts for a chat template; developer counts as system."""
    if not messages:
        raise InvalidRequest("'messages' must contain at least one message.", param="messages")
    out = []
    for i, m in enumerate(messages):
        if not isinstance(m, Mapping):
            raise InvalidRequest(f"messages[{i}] must be an object.", param=f"messages[{i}]")
        role = m.get("role")
        if not isinstance(role, str) or role not in ROLES:
            raise InvalidRequest(
                f"messages[{i}].role is {role!r}; "
                "supported roles are system, developer, user and assistant "
                "(tool calls are not supported).",
                param=f"messages[{i}].role",
            )
        content = m.get("content")
        if content is None:
            content = ""
        elif isinstance(content, list):
            parts = []
            for part in content:
                if not isinstance(part, dict) or part.get("type") != "text":
                    kind = part.get("type") if isinstance(part, dict) else type(part).__name__
                    raise InvalidRequest(
                        f"messages[{i}].content has a part of type {kind!r}; "
                        "only text parts are supported.",
                        param=f"messages[{i}].content",
                    )
                parts.append(limits.text(part.get("text", ""), f"messages[{i}].content"))
            content = "".join(parts)
        elif not isinstance(content, str):
            raise InvalidRequest(
                f"messages[{i}].content must be a string or a list of text parts.",
                param=f"messages[{i}].content",
            )
        else:
            limits.text(content, f"messages[{i}].content")  # valid Unicode (batches skip the API)
        out.append({"role": "system" if role == "developer" else role, "content": content})
    return out


class InferenceService:
    """Chat and text completions for a project's models, over one `ChatEngine`."""

    def __init__(self, engine: ChatEngine, catalog: Catalog) -> None:
        self.engine = engine
        self.catalog = catalog

    def target(self, project: str, model: str) -> Target:
        """Resolve a model id for this project; refuse models that cannot chat."""
        r = self.catalog.resolve(project, model)
        if r.base.kind != "chat":
            raise InvalidRequest(
                f"The model '{model}' is an {r.base.kind} model, not a chat model: use it "
                "with /v1/embeddings, or pick a chat model from /v1/models.",
                param="model",
                code="model_not_supported",
            )
        return Target(id=r.id, base=r.base, kind=r.kind, path=r.path)

    def _submit(
        self,
        target: Target,
        tokenizer: Tokenizer,
        prompt_ids: list[int],
        sampling: SamplingRequest,
        *,
        prompt_param: str,
    ) -> Submitted:
        params = sampling_params(
            sampling,
            prompt_tokens=len(prompt_ids),
            context_length=self.engine.context_length(target),
            vocab_size=len(tokenizer),
            prompt_param=prompt_param,
        )
        gen = self.engine.submit(target, prompt_ids, params)
        return Submitted(target.id, prompt_ids, gen, tokenizer)

    @staticmethod
    def chat_prompt(
        tokenizer: Tokenizer, model: str, messages: Sequence[Mapping[str, object]]
    ) -> list[int]:
        """Prompt token ids, rendered exactly the way training renders chats."""
        if not getattr(tokenizer, "chat_template", None):
            raise InvalidRequest(
                f"The model '{model}' has no chat template; call it with /v1/completions.",
                param="model",
            )
        text = tokenizer.apply_chat_template(
            chat_messages(messages), tokenize=False, add_generation_prompt=True
        )
        return list(tokenizer(text, add_special_tokens=False)["input_ids"])

    def start_chat(
        self,
        project: str,
        model: str,
        messages: Sequence[Mapping[str, object]],
        sampling: SamplingRequest = SamplingRequest(),
    ) -> Submitted:
        """Queue a chat completion (raises 400/404/503 before anything is generated)."""
        target = self.target(project, model)
        tokenizer = self.engine.tokenizer(target)
        prompt = self.chat_prompt(tokenizer, target.id, messages)
        return self._submit(target, tokenizer, prompt, sampling, prompt_param="messages")

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

    def close(self) -> None:
        self.engine.close()
