"""Tools offered to a model: the request's fields checked, the grammar a call must
follow, and the call read back out of the generated text.

`tools` + `tool_choice` + `parallel_tool_calls` (and the legacy `functions` +
`function_call`) become a `ToolPlan` (`inference.output_plan` turns it into a
grammar). `OutputParser` turns the generated text, as it streams, into content
and tool-call events.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, Literal

from tunelab.data.chat_render import CALL_CLOSE, CALL_OPEN, Function
from tunelab.errors import InvalidRequest
from tunelab.ids import random_token
from tunelab.inference.grammars import check_schema

MAX_FUNCTIONS = 128
_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")


@dataclass(frozen=True)
class ToolPlan:
    """Which functions the model may call, and whether it must."""

    functions: tuple[Function, ...]
    choice: Literal["none", "auto", "required"] = "auto"
    parallel: bool = True
    legacy: bool = False  # `functions` API: answer with `function_call`, one call at most

    @property
    def may_call(self) -> bool:
        return self.choice != "none"


def _function_decl(raw: object, param: str) -> Function:
    if not isinstance(raw, dict):
        raise InvalidRequest(f"'{param}' must be an object with a 'name'.", param=param)
    name = raw.get("name")
    if not isinstance(name, str) or not _NAME.match(name):
        raise InvalidRequest(
            f"'{param}.name' must be 1 to 64 letters, digits, underscores or dashes, got {name!r}.",
            param=f"{param}.name",
        )
    params = raw.get("parameters")
    if params is not None:
        check_schema(params, f"{param}.parameters")
    desc = raw.get("description")
    if desc is not None and not isinstance(desc, str):
        raise InvalidRequest(
            f"'{param}.description' must be a string.", param=f"{param}.description"
        )
    return Function(name, desc, params, strict=raw.get("strict") is True)


def _named(choice: object, param: str, names: set[str]) -> str:
    if isinstance(choice, dict):
        fn = choice.get("function") if "function" in choice else choice
        name = fn.get("name") if isinstance(fn, dict) else None
        if isinstance(name, str):
            if name not in names:
                raise InvalidRequest(
                    f"'{param}' names the function {name!r}, which is not among the tools "
                    f"({', '.join(sorted(names))}).",
                    param=param,
                )
            return name
    raise InvalidRequest(
        f"'{param}' must be 'none', 'auto', 'required' or a function to call, got {choice!r}.",
        param=param,
    )


def chat_tool_plan(
    tools: list[Any] | None,
    tool_choice: object,
    parallel_tool_calls: bool | None,
    functions: list[Any] | None = None,
    function_call: object = None,
    *,
    flat: bool = False,
) -> ToolPlan | None:
    """The plan for a chat request (or, with `flat`, a Responses request whose function
    tools are `{"type": "function", "name", "parameters"}`); None without tools."""
    if tools and functions:
        raise InvalidRequest("Send 'tools' or the older 'functions', not both.", param="functions")
    legacy = bool(functions)
    if not tools and not functions:
        for param, value in (("tool_choice", tool_choice), ("function_call", function_call)):
            if value not in (None, "none", "auto"):
                raise InvalidRequest(
                    f"'{param}' needs tools to choose from; add 'tools'.", param=param
                )
        return None
    entries = functions if legacy else tools
    assert entries is not None
    if len(entries) > MAX_FUNCTIONS:
        param = "functions" if legacy else "tools"
        raise InvalidRequest(f"'{param}' takes at most {MAX_FUNCTIONS} functions.", param=param)
    fns: list[Function] = []
    for i, t in enumerate(entries):
        if legacy:
            fns.append(_function_decl(t, f"functions[{i}]"))
            continue
        kind = t.get("type") if isinstance(t, dict) else None
        if kind != "function":
            raise InvalidRequest(
                f"Tool type {kind!r} is not supported here; tunelab serves 'function' tools.",
                param=f"tools[{i}].type",
            )
        fns.append(
            _function_decl(
                t if flat else t.get("function"), f"tools[{i}]" + ("" if flat else ".function")
            )
        )
    names = {f.name for f in fns}
    if len(names) != len(fns):
        raise InvalidRequest(
            "Function names must be unique.", param="functions" if legacy else "tools"
        )
    param = "function_call" if legacy else "tool_choice"
    choice = function_call if legacy else tool_choice
    mode: Literal["none", "auto", "required"] = "auto"
    if choice is None or choice in ("auto", "none", "required"):
        if legacy and choice == "required":
            raise InvalidRequest(
                "'function_call' must be 'none', 'auto' or {\"name\": ...}.", param=param
            )
        mode = "auto" if choice is None else choice
    elif isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        allowed = choice.get("allowed_tools") if not flat else choice
        if not isinstance(allowed, dict) or allowed.get("mode") not in ("auto", "required"):
            raise InvalidRequest(
                "'tool_choice.allowed_tools.mode' must be 'auto' or 'required'.", param=param
            )
        keep = {
            _named(t, f"{param}.allowed_tools.tools", names) for t in allowed.get("tools") or []
        }
        fns, mode = [f for f in fns if f.name in keep], allowed["mode"]
    else:
        name = _named(choice, param, names)
        fns, mode = [f for f in fns if f.name == name], "required"
    parallel = parallel_tool_calls is not False and not legacy
    return ToolPlan(tuple(fns), mode, parallel, legacy)


# -- reading the output back ----------------------------------------------------------


@dataclass(frozen=True)
class Content:
    text: str


@dataclass(frozen=True)
class CallOpened:
    index: int
    id: str
    name: str


@dataclass(frozen=True)
class CallArguments:
    index: int
    text: str


OutputEvent = Content | CallOpened | CallArguments
_HEAD = re.compile(r'\{"name": ("(?:[^"\\]|\\.)*"), "arguments": ')


def new_call_id() -> str:
    return "call_" + random_token(24)


class OutputParser:
    """Generated text in, content / tool-call events out, as it streams.

    Text is held back only while it could still be the start of a call. The
    first call streams as it is written; a later one is held until it is complete,
    because small models tend to repeat a call word for word: a repeat is dropped
    and sets `repeated`, and the caller ends the choice there (a second identical
    call could only return the same result)."""

    def __init__(self, *, calls: bool) -> None:
        self._mode: Literal["?", "content", "calls"] = "?" if calls else "content"
        self._buf = ""
        self._state: Literal["head", "args", "tail"] = "head"
        self._depth = 0
        self._in_string = self._escape = False
        self._current: tuple[str, str, list[str]] | None = None
        self.calls: list[tuple[str, str, list[str]]] = []  # (id, name, argument pieces)
        self.content: list[str] = []
        self.repeated = False

    @property
    def has_calls(self) -> bool:
        return bool(self.calls)

    def feed(self, text: str) -> list[OutputEvent]:
        if self.repeated:
            return []
        self._buf += text
        if self._mode == "?":
            if self._buf.startswith(CALL_OPEN):
                self._mode = "calls"
            elif CALL_OPEN.startswith(self._buf):
                return []  # could still become a call
            else:
                self._mode = "content"
        if self._mode == "content":
            piece, self._buf = self._buf, ""
            self.content.append(piece)
            return [Content(piece)] if piece else []
        return self._calls()

    def _calls(self) -> list[OutputEvent]:
        events: list[OutputEvent] = []
        while self._buf and not self.repeated:
            if self._state == "head":
                self._buf = self._buf.lstrip("\n")
                if not self._buf.startswith(CALL_OPEN):
                    if CALL_OPEN.startswith(self._buf):
                        break
                    raise ValueError(f"unexpected text between tool calls: {self._buf[:40]!r}")
                m = _HEAD.match(self._buf, len(CALL_OPEN))
                if m is None:
                    break
                self._current = (new_call_id(), json.loads(m.group(1)), [])
                if not self.calls:  # the first call streams at once
                    self.calls.append(self._current)
                    events.append(CallOpened(0, self._current[0], self._current[1]))
                self._buf = self._buf[m.end() :]
                self._state, self._depth = "args", 0
                self._in_string = self._escape = False
            elif self._state == "args":
                assert self._current is not None
                end, closed = self._scan()
                piece, self._buf = self._buf[:end], self._buf[end:]
                self._current[2].append(piece)
                streaming = self.calls and self.calls[-1] is self._current
                if piece and streaming:
                    events.append(CallArguments(len(self.calls) - 1, piece))
                if not closed:
                    break
                if not streaming:
                    events += self._complete(self._current)
                self._state = "tail"
            else:
                tail = "}" + CALL_CLOSE
                if len(self._buf) < len(tail):
                    break
                self._buf = self._buf[len(tail) :]
                self._state = "head"
        return events

    def _complete(self, call: tuple[str, str, list[str]]) -> list[OutputEvent]:
        """A later call, now whole: dropped if it repeats an earlier one, else emitted."""
        cid, name, pieces = call
        args = "".join(pieces)
        if any(n == name and "".join(p) == args for _, n, p in self.calls):
            self.repeated = True
            return []
        self.calls.append(call)
        i = len(self.calls) - 1
        return [CallOpened(i, cid, name), CallArguments(i, args)]

    def _scan(self) -> tuple[int, bool]:
        """How much of the buffer belongs to the current arguments object, and
        whether the object closes within it."""
        for i, ch in enumerate(self._buf):
            if self._in_string:
                if self._escape:
                    self._escape = False
                elif ch == "\\":
                    self._escape = True
                elif ch == '"':
                    self._in_string = False
            elif ch == '"':
                self._in_string = True
            elif ch in "{[":
                self._depth += 1
            elif ch in "}]":
                self._depth -= 1
                if self._depth == 0:
                    return i + 1, True
        return len(self._buf), False

    def finish(self) -> list[OutputEvent]:
        """Whatever was held back, once the output has ended."""
        if self._mode == "?" and self._buf:
            self._mode = "content"
            return self.feed("")
        return []


@dataclass
class ParsedOutput:
    content: str | None  # None when the answer is tool calls
    calls: list[tuple[str, str, str]]  # (id, name, arguments)


def parsed(p: OutputParser) -> ParsedOutput:
    """What a parser has read, once its text has ended (`finish` called)."""
    found = [(cid, name, "".join(args)) for cid, name, args in p.calls]
    return ParsedOutput(None if found else "".join(p.content), found)


def parse_output(text: str, *, calls: bool) -> ParsedOutput:
    p = OutputParser(calls=calls)
    p.feed(text)
    p.finish()
    return parsed(p)
