"""A chat request's tools and response format in, OpenAI's message and stream
deltas out: content, `tool_calls` (or the legacy `function_call`).

Shared by /v1/chat/completions and anything else that answers in chat shapes,
so a tool call looks the same whichever door it came through.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

from tunelab.inference.handle import TokenLogprob
from tunelab.inference.output_plan import OutputPlan, chat_response_format, output_plan
from tunelab.inference.service import Choice
from tunelab.inference.tool_calls import (
    CallArguments,
    CallOpened,
    Content,
    OutputEvent,
    OutputParser,
    chat_tool_plan,
)
from tunelab.protocol import chat as c


def chat_plan(body: c.ChatCompletionRequest) -> OutputPlan:
    """Tools, tool_choice, parallel_tool_calls, functions, function_call and
    response_format of a request, checked (400 naming the field) and as one grammar."""
    tools = chat_tool_plan(
        body.tools, body.tool_choice, body.parallel_tool_calls, body.functions, body.function_call
    )
    fmt = body.response_format.model_dump() if body.response_format else None
    schema = chat_response_format(fmt, body.messages)
    return output_plan(tools=tools, schema=schema)


def finish_reason(plan: OutputPlan, reason: str, has_calls: bool) -> str:
    if has_calls and reason != "length":
        return "function_call" if plan.tools is not None and plan.tools.legacy else "tool_calls"
    return reason


def chat_message(plan: OutputPlan, choice: Choice) -> tuple[c.ChatMessage, str]:
    """The assistant message for one finished choice, and its finish_reason."""
    parsed = choice.output()
    reason = choice.finish_reason or "stop"
    calls = [
        c.ToolCall(id=cid, function=c.FunctionCall(name=name, arguments=args))
        for cid, name, args in parsed.calls
    ]
    legacy = plan.tools is not None and plan.tools.legacy
    message = c.ChatMessage(
        content=parsed.content,
        tool_calls=calls if calls and not legacy else None,
        function_call=calls[0].function if calls and legacy else None,
    )
    return message, finish_reason(plan, reason, bool(calls))


@dataclass
class ChoiceStream:
    """One choice's text deltas turned into chunk deltas, OpenAI's way: the first
    delta carries `role`; a call opens with index, id, type and name (arguments
    ""), then arguments pieces; held-back logprobs ride on the next chunk."""

    plan: OutputPlan
    index: int
    parser: OutputParser = field(init=False)
    started: bool = False
    pending_logprobs: list[TokenLogprob] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.parser = self.plan.parser()

    @property
    def eager(self) -> bool:
        """Free text: the role chunk can go out before the first token."""
        return not self.plan.calls

    def feed(self, text: str) -> list[c.ChunkDelta]:
        return self._deltas(self.parser.feed(text))

    def finish(self) -> list[c.ChunkDelta]:
        out = self._deltas(self.parser.finish())
        if not self.started:  # nothing was generated: still open the message
            self.started = True
            out.insert(0, c.ChunkDelta(role="assistant", content=""))
        return out

    def _deltas(self, events: list[OutputEvent]) -> list[c.ChunkDelta]:
        out: list[c.ChunkDelta] = []
        legacy = self.plan.tools is not None and self.plan.tools.legacy
        for ev in events:
            if isinstance(ev, Content):
                if not self.started:
                    out.append(c.ChunkDelta(role="assistant", content=""))
                out.append(c.ChunkDelta(content=ev.text))
            elif isinstance(ev, CallOpened):
                fn = c.FunctionDelta(name=ev.name, arguments="")
                role: Literal["assistant"] | None = None if self.started else "assistant"
                if legacy:
                    out.append(c.ChunkDelta(role=role, function_call=fn))
                else:
                    call = c.ToolCallDelta(index=ev.index, id=ev.id, type="function", function=fn)
                    out.append(c.ChunkDelta(role=role, tool_calls=[call]))
            elif isinstance(ev, CallArguments):
                fn = c.FunctionDelta(arguments=ev.text)
                if legacy:
                    out.append(c.ChunkDelta(function_call=fn))
                else:
                    out.append(
                        c.ChunkDelta(tool_calls=[c.ToolCallDelta(index=ev.index, function=fn)])
                    )
            self.started = True
        return out

    def finish_reason(self, reason: str) -> str:
        return finish_reason(self.plan, reason, self.parser.has_calls)
