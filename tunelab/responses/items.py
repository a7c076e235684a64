"""Responses input items as chat messages, and the tools of a request.

Input items: messages (roles user, assistant, system, developer; text parts),
`function_call` items the model produced earlier (consecutive ones become one
assistant turn with `tool_calls`), and `function_call_output` items (tool
results, matched by `call_id`). Tools: at most one `file_search`, and any number
of flat function tools `{"type": "function", "name", "description"?,
"parameters"?, "strict"?}`.
"""

from __future__ import annotations

from dataclasses import dataclass

from pydantic import ValidationError

from tunelab import limits
from tunelab.errors import InvalidRequest
from tunelab.inference.tool_calls import ToolPlan, chat_tool_plan
from tunelab.protocol.responses import CreateResponse, FileSearchTool

_ROLES = {"user": "user", "assistant": "assistant", "system": "system", "developer": "system"}


def text_of(content: object, where: str) -> str:
    if isinstance(content, str):
        return limits.text(content, where)
    if isinstance(content, list):
        parts = [p.get("text", "") if isinstance(p, dict) else None for p in content]
        texts = [p for p in parts if isinstance(p, str)]
        if len(texts) == len(parts):
            return limits.text("".join(texts), where)
    raise InvalidRequest(f"'{where}' must be a string or a list of text parts.", param=where)


def _call_message(item: dict[str, object], n: int) -> dict[str, object]:
    call_id, name, args = item.get("call_id"), item.get("name"), item.get("arguments")
    if not (isinstance(call_id, str) and isinstance(name, str) and isinstance(args, str)):
        raise InvalidRequest(
            f"input[{n}] (function_call) needs 'call_id', 'name' and 'arguments' strings.",
            param=f"input[{n}]",
        )
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": args}}


def parse_input(value: str | list[dict[str, object]]) -> list[dict[str, object]]:
    """The input as chat messages (user/assistant/system/tool; assistant tool_calls)."""
    if isinstance(value, str):
        return [{"role": "user", "content": value}]
    messages = as_chat(value)
    if not messages or messages[-1]["role"] not in ("user", "tool"):
        raise InvalidRequest(
            "The input must end with a user message or a function_call_output.", param="input"
        )
    return messages


def as_chat(value: list[dict[str, object]]) -> list[dict[str, object]]:
    """Items (messages, function_call, function_call_output) as chat messages."""
    messages: list[dict[str, object]] = []
    for n, item in enumerate(value):
        if not isinstance(item, dict):
            raise InvalidRequest(f"input[{n}] must be an object.", param=f"input[{n}]")
        kind = item.get("type", "message")
        if kind == "function_call":
            call = _call_message(item, n)
            last = messages[-1] if messages else None
            if last is not None and last["role"] == "assistant" and "tool_calls" in last:
                calls = last["tool_calls"]
                assert isinstance(calls, list)
                calls.append(call)
            else:
                messages.append({"role": "assistant", "content": None, "tool_calls": [call]})
            continue
        if kind == "function_call_output":
            output = item.get("output")
            messages.append(
                {
                    "role": "tool",
                    "tool_call_id": item.get("call_id"),
                    "content": text_of(output, f"input[{n}].output"),
                }
            )
            continue
        role_given = item.get("role", "")
        role = _ROLES.get(role_given) if isinstance(role_given, str) else None
        if role is None or kind != "message":
            raise InvalidRequest(
                f"input[{n}] must be a message (role user, assistant, system or developer), "
                "a function_call or a function_call_output.",
                param=f"input[{n}]",
            )
        messages.append(
            {"role": role, "content": text_of(item.get("content"), f"input[{n}].content")}
        )
    return messages


@dataclass
class Tools:
    file_search: FileSearchTool | None
    functions: ToolPlan | None


def parse_tools(req: CreateResponse) -> Tools:
    found = None
    functions: list[dict[str, object]] = []
    for n, tool in enumerate(req.tools):
        kind = tool.get("type")
        if kind == "function":
            functions.append(tool)
            continue
        if kind != "file_search":
            raise InvalidRequest(
                f"Tool type {kind!r} is not supported; tunelab serves 'file_search' and "
                "'function' tools.",
                param=f"tools[{n}].type",
            )
        if found is not None:
            raise InvalidRequest("Pass at most one file_search tool.", param=f"tools[{n}]")
        try:
            found = FileSearchTool.model_validate(tool)
        except ValidationError as e:
            first = e.errors(include_url=False)[0]
            where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in first["loc"])
            raise InvalidRequest(
                f"Invalid value for 'tools[{n}]{where}': {first['msg']}.",
                param=f"tools[{n}]{where}",
            ) from None
    choice = req.tool_choice
    if isinstance(choice, dict) and choice.get("type") == "file_search":
        choice = "auto"  # the search always runs when the tool is given
    plan = chat_tool_plan(functions or None, choice, req.parallel_tool_calls, flat=True)
    return Tools(found, plan)
