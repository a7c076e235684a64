"""How a conversation with tools becomes the text a model reads: one rendering for
training and serving, so a fine-tune learns exactly the format it is served with.

A chat template that knows tools (its source mentions `tools`, as Qwen2.5's,
Hermes' and SmolLM3's do) gets them its own way: the tool list through
`apply_chat_template(tools=...)`, assistant `tool_calls` and `tool` messages as
messages. A template that does not (SmolLM2's is plain ChatML) gets the
documented fallback:

- the tool list goes into the system message, after its own text, as
  `TOOLS_INTRO` + one JSON object per function inside `<tools></tools>` +
  `CALL_INSTRUCTIONS`;
- an assistant turn that calls tools is its text (if any) followed by one block
  per call, `<tool_call>\\n{"name": "<name>", "arguments": <JSON object>}\\n</tool_call>`
  (blocks separated by a newline);
- a `tool` (or legacy `function`) result is a user turn
  `<tool_response>\\n<content>\\n</tool_response>`, so templates that only know
  system/user/assistant accept it;
- an assistant refusal (`"refusal": "..."`) is `<refusal>` followed by its text.

Either way a model answers a call in the `<tool_call>` form above, the form those
tool-aware templates train their models on; serving constrains the call to it
(`inference.tool_calls`), and `parse_tool_call` reads it back.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

CALL_OPEN = "<tool_call>\n"
CALL_CLOSE = "\n</tool_call>"
CALL_SEPARATOR = "\n"
REFUSAL_OPEN = "<refusal>"
TOOLS_INTRO = "You can call functions to help answer. The functions, as JSON schemas:\n<tools>\n"
CALL_INSTRUCTIONS = (
    "\n</tools>\nTo call a function, answer with one block per call and nothing else:\n"
    '<tool_call>\n{"name": "<function name>", "arguments": <arguments as a JSON object>}\n'
    "</tool_call>"
)


@dataclass(frozen=True)
class Function:
    """One callable function as a request or a training line declares it."""

    name: str
    description: str | None = None
    parameters: dict[str, Any] | None = None
    strict: bool = False

    def declaration(self) -> dict[str, Any]:
        out: dict[str, Any] = {"name": self.name}
        if self.description:
            out["description"] = self.description
        if self.parameters is not None:
            out["parameters"] = self.parameters
        return out


def functions_of(tools: object, functions: object = None) -> list[Function]:
    """The functions of a `tools` list (chat shape) or a legacy `functions` list.

    Entries that are not function tools are skipped here; validators report them."""
    out: list[Function] = []
    for t in tools if isinstance(tools, list) else []:
        fn = t.get("function") if isinstance(t, dict) and t.get("type") == "function" else None
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            out.append(_function(fn))
    for fn in functions if isinstance(functions, list) else []:
        if isinstance(fn, dict) and isinstance(fn.get("name"), str):
            out.append(_function(fn))
    return out


def _function(fn: Mapping[str, Any]) -> Function:
    params = fn.get("parameters")
    return Function(
        name=fn["name"],
        description=fn.get("description") if isinstance(fn.get("description"), str) else None,
        parameters=params if isinstance(params, dict) else None,
        strict=fn.get("strict") is True,
    )


def format_call(name: str, arguments: str) -> str:
    """One call as the model writes it; `arguments` is a JSON object's text."""
    head = json.dumps(name, ensure_ascii=False)
    return f'{CALL_OPEN}{{"name": {head}, "arguments": {arguments}}}{CALL_CLOSE}'


def template_knows_tools(tokenizer: Any) -> bool:
    template = getattr(tokenizer, "chat_template", None)
    return isinstance(template, str) and "tools" in template


def _text(content: object) -> str:
    if isinstance(content, list):  # text parts
        return "".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return content if isinstance(content, str) else ""


def _calls(message: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(name, arguments text) of an assistant message's tool_calls or function_call."""
    calls = []
    for call in message.get("tool_calls") or []:
        fn = call.get("function") if isinstance(call, dict) else None
        if isinstance(fn, dict):
            calls.append((str(fn.get("name", "")), _arguments(fn.get("arguments"))))
    fc = message.get("function_call")
    if isinstance(fc, dict):
        calls.append((str(fc.get("name", "")), _arguments(fc.get("arguments"))))
    return calls


def _arguments(value: object) -> str:
    """Arguments as compact JSON text (a JSON string is re-serialised, so spacing is one
    canonical form whatever the client sent)."""
    if isinstance(value, str):
        try:
            decoded = json.loads(value)
        except ValueError:
            return value
        return json.dumps(decoded, ensure_ascii=False)
    return json.dumps(value if value is not None else {}, ensure_ascii=False)


def _loads(arguments: str) -> object:
    """Templates take arguments as a mapping; text that is not JSON stays text."""
    try:
        return json.loads(arguments)
    except ValueError:
        return arguments


@dataclass
class RenderedChat:
    """Messages ready for `apply_chat_template(messages, **template_kwargs)`.

    `source[i]` is the index of the original message that rendered message i came
    from (None for an inserted system message), so training can find each
    assistant turn's weight."""

    messages: list[dict[str, Any]]
    source: list[int | None]
    template_kwargs: dict[str, Any] = field(default_factory=dict)


def render_chat(
    tokenizer: Any, messages: Sequence[Mapping[str, Any]], functions: Sequence[Function] = ()
) -> RenderedChat:
    """Messages (OpenAI shapes: tool_calls, tool, function, refusal, developer) as the
    model's chat template takes them, with `functions` offered as tools."""
    native = bool(functions) and template_knows_tools(tokenizer)
    out: list[dict[str, Any]] = []
    source: list[int | None] = []
    for i, m in enumerate(messages):
        role = m.get("role", "user")
        content = _text(m.get("content"))
        if role == "developer":
            role = "system"
        if role == "assistant":
            calls = _calls(m)
            refusal = m.get("refusal")
            if not content and isinstance(refusal, str) and refusal:
                content = REFUSAL_OPEN + refusal
            if native and calls:
                msg: dict[str, Any] = {
                    "role": "assistant",
                    "content": content,
                    "tool_calls": [
                        {"type": "function", "function": {"name": n, "arguments": _loads(a)}}
                        for n, a in calls
                    ],
                }
                out.append(msg)
            else:
                blocks = CALL_SEPARATOR.join(format_call(n, a) for n, a in calls)
                text = f"{content}\n{blocks}" if content and blocks else content or blocks
                out.append({"role": "assistant", "content": text})
        elif role in ("tool", "function"):
            if native:
                out.append({"role": "tool", "content": content})
            else:
                out.append(
                    {"role": "user", "content": f"<tool_response>\n{content}\n</tool_response>"}
                )
        else:
            out.append({"role": role, "content": content})
        source.append(i)
    if native:
        tools = [{"type": "function", "function": f.declaration()} for f in functions]
        return RenderedChat(out, source, {"tools": tools})
    if functions:
        listing = "\n".join(json.dumps(f.declaration(), ensure_ascii=False) for f in functions)
        block = TOOLS_INTRO + listing + CALL_INSTRUCTIONS
        if out and out[0]["role"] == "system":
            out[0] = {"role": "system", "content": f"{out[0]['content']}\n\n{block}".lstrip()}
        else:
            out.insert(0, {"role": "system", "content": block})
            source.insert(0, None)
    return RenderedChat(out, source)
