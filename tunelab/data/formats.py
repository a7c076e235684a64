"""Training example formats: detection, per-example checks, conversion to chat.

Accepted shapes of one example (one JSONL line, CSV row or JSON array item):

  chat               {"messages": [{"role": ..., "content": ...}, ...], "tools"?: [...],
                      "functions"?: [...], "parallel_tool_calls"?: bool}
  prompt_completion  {"prompt": str, "completion": str}
  alpaca             {"instruction": str, "input"?: str, "output": str, "system"?: str,
                      "history"?: [[user, assistant], ...]}
  sharegpt           {"conversations": [{"from": "human"|"gpt"|"system"|..., "value": str}],
                      "system"?: str}
  preference         {"input": {"messages": [...], "tools"?: [...]},
                      "preferred_output": [assistant message],
                      "non_preferred_output": [assistant message]}   (for method "dpo";
                      the older spelling *_completion is read as *_output)

Alpaca and ShareGPT examples are converted to chat messages, so everything past
this module sees only chat or prompt/completion. The chat checks are the
categories of OpenAI's cookbook validation (missing messages, bad roles, missing
content, unrecognised keys, no assistant message), plus `weight` values and the
shape of tool calls; each issue names the message index and field.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

ROLES = ("system", "user", "assistant", "tool", "function", "developer")
MESSAGE_KEYS = frozenset(
    {"role", "content", "name", "function_call", "tool_calls", "tool_call_id", "weight", "refusal"}
)
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "chatgpt": "assistant",
    "bard": "assistant",
    "bing": "assistant",
    "system": "system",
    "observation": "tool",
    "tool": "tool",
}
_PLAIN_KEYS = frozenset({"role", "content"})
_PLAIN_ROLES = frozenset({"system", "user", "assistant", "developer"})
UNKNOWN_FORMAT = (
    "Unexpected file format, expected either prompt/completion pairs or chat messages "
    '({"messages": [...]}; Alpaca instruction/output and ShareGPT conversations are converted), '
    "or preference pairs for DPO (input, preferred_output, non_preferred_output)."
)


@dataclass
class Issue:
    """One thing wrong with an example; message_index is 1-based."""

    message: str
    message_index: int | None = None
    field: str | None = None


@dataclass
class Parsed:
    """An example after detection and conversion: `example` is None when it has issues."""

    format: str | None  # chat | prompt_completion | alpaca | sharegpt, None if unknown
    example: dict[str, Any] | None
    issues: list[Issue] = field(default_factory=list)

    @property
    def kind(self) -> str | None:
        """What training sees: "chat", "prompt_completion" or "preference"."""
        if self.format is None:
            return None
        if self.format in ("prompt_completion", "preference"):
            return self.format
        return "chat"


def json_type(value: Any) -> str:
    """The JSON name of a Python value's type, for messages users understand."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, (int, float)):
        return "number"
    names: dict[type, str] = {str: "string", list: "array", dict: "object"}
    return names.get(type(value), type(value).__name__)


def detect_format(obj: Any) -> str | None:
    if not isinstance(obj, dict):
        return None
    if "messages" in obj:
        return "chat"
    if "prompt" in obj and "completion" in obj:
        return "prompt_completion"
    if "instruction" in obj and "output" in obj:
        return "alpaca"
    if "conversations" in obj:
        return "sharegpt"
    if "input" in obj and any(k in obj for k in PREFERENCE_KEYS):
        return "preference"
    return None


def parse_example(obj: Any) -> Parsed:
    """Detect the format of one parsed example, check it, and convert it."""
    if not isinstance(obj, dict):
        return Parsed(None, None, [Issue(f"expected a JSON object, got {json_type(obj)}")])
    fmt = detect_format(obj)
    if fmt is None:
        return Parsed(None, None, [Issue(UNKNOWN_FORMAT)])
    if fmt == "prompt_completion":
        issues = [
            Issue(f'"{k}" must be a string, got {json_type(obj[k])}', field=k)
            for k in ("prompt", "completion")
            if not isinstance(obj[k], str)
        ]
        example = {"prompt": obj["prompt"], "completion": obj["completion"]}
        return Parsed(fmt, None if issues else example, issues)
    if fmt == "preference":
        return _preference(obj)
    if fmt == "alpaca":
        messages, issues = _alpaca_messages(obj)
    elif fmt == "sharegpt":
        messages, issues = _sharegpt_messages(obj)
    else:
        messages, issues = obj["messages"], []
    if not issues:
        issues = check_chat(messages, tools=obj.get("tools"))
    example = {"messages": messages}
    if fmt == "chat":
        issues += _check_functions(obj)
        for key in ("tools", "functions", "parallel_tool_calls"):
            if key in obj:
                example[key] = obj[key]
    return Parsed(fmt, None if issues else example, issues)


PREFERENCE_KEYS = (
    "preferred_output",
    "non_preferred_output",
    "preferred_completion",
    "non_preferred_completion",
)


def _preference(obj: dict[str, Any]) -> Parsed:
    """A DPO pair: one input conversation, a preferred and a non-preferred answer to it."""
    issues: list[Issue] = []
    unknown = sorted(set(obj) - {"input", *PREFERENCE_KEYS})
    for key in unknown:
        issues.append(
            Issue(
                f"unrecognised key {key!r}; a preference example has input, preferred_output "
                "and non_preferred_output",
                field=key,
            )
        )
    given = obj["input"]
    if not isinstance(given, dict) or "messages" not in given:
        issues.append(Issue('"input" must be an object with "messages"', field="input"))
        return Parsed("preference", None, issues)
    messages = given["messages"]
    if not isinstance(messages, list) or not messages:
        issues.append(Issue('"input.messages" is missing or empty', field="input.messages"))
        return Parsed("preference", None, issues)
    # The conversation so far: any roles, but it ends before the answer being judged.
    answered = [*messages, {"role": "assistant", "content": "-"}]
    for issue in check_chat(answered, tools=given.get("tools")):
        if issue.message_index is not None and issue.message_index <= len(messages):
            issue.field = f"input.messages[{issue.message_index - 1}]" + (
                f".{issue.field}" if issue.field else ""
            )
            issue.message_index = None
            issues.append(issue)
        elif issue.message_index is None and issue.field == "tools":
            issue.field = "input.tools"
            issues.append(issue)
    if isinstance(messages[-1], dict) and messages[-1].get("role") == "assistant":
        issues.append(
            Issue(
                "the input ends with an assistant message; the answers being compared are the "
                "next assistant turn, so end the input with the user's message",
                field=f"input.messages[{len(messages) - 1}]",
            )
        )
    outputs = {}
    for key in ("preferred_output", "non_preferred_output"):
        old = key.replace("_output", "_completion")
        value = obj.get(key, obj.get(old))
        where = key if key in obj or old not in obj else old
        if (
            not isinstance(value, list)
            or len(value) != 1
            or not isinstance(value[0], dict)
            or value[0].get("role") != "assistant"
        ):
            issues.append(
                Issue(
                    f'"{where}" must be a list of exactly one assistant message '
                    '([{"role": "assistant", "content": "..."}])',
                    field=where,
                )
            )
            continue
        content = value[0].get("content")
        if not isinstance(content, str) or not content.strip():
            issues.append(
                Issue(
                    f'"{where}[0].content" must be non-empty text (preference pairs are text only)',
                    field=f"{where}[0].content",
                )
            )
            continue
        outputs[key] = [{"role": "assistant", "content": content}]
    if not issues and outputs["preferred_output"] == outputs["non_preferred_output"]:
        issues.append(
            Issue(
                "the preferred and non-preferred answers are the same; a pair must differ",
                field="non_preferred_output",
            )
        )
    if issues:
        return Parsed("preference", None, issues)
    example: dict[str, Any] = {"input": {"messages": messages}, **outputs}
    if "tools" in given:
        example["input"]["tools"] = given["tools"]
    return Parsed("preference", example, issues)


def prompt_completion_to_chat(prompt: str, completion: str) -> dict[str, Any]:
    messages = [{"role": "user", "content": prompt}] if prompt else []
    return {"messages": [*messages, {"role": "assistant", "content": completion}]}


def _require_str(obj: dict[str, Any], key: str, *, optional: bool = False) -> list[Issue]:
    if optional and obj.get(key) is None:
        return []
    if not isinstance(obj.get(key), str):
        return [Issue(f'"{key}" must be a string, got {json_type(obj.get(key))}', field=key)]
    return []


def _alpaca_messages(obj: dict[str, Any]) -> tuple[list[dict[str, Any]], list[Issue]]:
    issues = _require_str(obj, "instruction") + _require_str(obj, "output")
    issues += _require_str(obj, "input", optional=True) + _require_str(obj, "system", optional=True)
    history = obj.get("history") or []
    if not isinstance(history, list) or not all(
        isinstance(h, list) and len(h) == 2 and all(isinstance(t, str) for t in h) for h in history
    ):
        issues.append(
            Issue('"history" must be a list of [user, assistant] string pairs', field="history")
        )
    if issues:
        return [], issues
    messages: list[dict[str, Any]] = []
    if obj.get("system"):
        messages.append({"role": "system", "content": obj["system"]})
    for user, assistant in history:
        messages += [{"role": "user", "content": user}, {"role": "assistant", "content": assistant}]
    prompt = obj["instruction"] + (f"\n\n{obj['input']}" if obj.get("input") else "")
    messages += [
        {"role": "user", "content": prompt},
        {"role": "assistant", "content": obj["output"]},
    ]
    return messages, []


def _sharegpt_messages(obj: dict[str, Any]) -> tuple[list[dict[str, Any]], list[Issue]]:
    turns = obj["conversations"]
    if not isinstance(turns, list) or not turns:
        return [], [Issue('"conversations" must be a non-empty list', field="conversations")]
    issues = _require_str(obj, "system", optional=True)
    messages = [{"role": "system", "content": obj["system"]}] if obj.get("system") else []
    for i, turn in enumerate(turns, 1):
        if not isinstance(turn, dict):
            issues.append(Issue(f"turn must be a JSON object, got {json_type(turn)}", i))
            continue
        speaker = turn.get("from")
        role = SHAREGPT_ROLES.get(speaker) if isinstance(speaker, str) else None
        if role is None:
            issues.append(
                Issue(f"unrecognised speaker {speaker!r}; use one of human, gpt, system", i, "from")
            )
        if not isinstance(turn.get("value"), str):
            issues.append(
                Issue(f'"value" must be a string, got {json_type(turn.get("value"))}', i, "value")
            )
        if not issues:
            messages.append({"role": role, "content": turn["value"]})
    return messages, issues


def check_chat(messages: Any, *, tools: Any = None) -> list[Issue]:
    """Every problem in one chat example's messages (empty when it is trainable)."""
    if not isinstance(messages, list) or not messages:
        what = "missing or empty" if not messages else f"a {json_type(messages)}, not a list"
        return [Issue(f'"messages" is {what}', field="messages")]
    issues: list[Issue] = []
    if tools is not None and not _valid_tools(tools):
        issues.append(
            Issue(
                '"tools" must be a list of {"type": "function", "function": {"name": ...}}',
                field="tools",
            )
        )
    trained = assistants = 0
    for i, m in enumerate(messages, 1):
        if not isinstance(m, dict):
            issues.append(Issue(f"message must be a JSON object, got {json_type(m)}", i))
            continue
        role, content = m.get("role"), m.get("content")
        # Most messages are exactly {"role": plain role, "content": "..."}; checking
        # that shape inline keeps validation near json.loads speed.
        if not (
            type(content) is str and content and role in _PLAIN_ROLES and m.keys() <= _PLAIN_KEYS
        ):
            issues += _check_message(m, i)
        if role == "assistant":
            assistants += 1
            trained += m.get("weight", 1) != 0
    if assistants == 0:
        issues.append(
            Issue(
                "no assistant message; each example needs at least one assistant reply to "
                "learn from"
            )
        )
    elif trained == 0:
        issues.append(
            Issue("every assistant message has weight 0, so there is nothing to train on")
        )
    return issues


def _check_message(m: dict[str, Any], i: int) -> list[Issue]:
    issues = []
    content = m.get("content")
    role = m.get("role")
    if "role" not in m:
        issues.append(Issue('"role" is missing', i, "role"))
    elif role not in ROLES:
        issues.append(
            Issue(f"unrecognised role {role!r}; use one of {', '.join(ROLES)}", i, "role")
        )
    for key in sorted(set(m) - MESSAGE_KEYS):
        issues.append(
            Issue(
                f"unrecognised key {key!r}; a message may only have "
                f"{', '.join(sorted(MESSAGE_KEYS))}",
                i,
                key,
            )
        )
    calls = m.get("tool_calls") or m.get("function_call")
    if content is None or content == "" or content == []:
        if not calls:
            issues.append(Issue('"content" is missing or empty', i, "content"))
    elif isinstance(content, list):
        if not all(
            isinstance(p, dict) and p.get("type") == "text" and isinstance(p.get("text"), str)
            for p in content
        ):
            issues.append(
                Issue(
                    'content parts must be {"type": "text", "text": "..."}; only text can be '
                    "trained on",
                    i,
                    "content",
                )
            )
    elif not isinstance(content, str):
        issues.append(Issue(f'"content" must be a string, got {json_type(content)}', i, "content"))
    if "weight" in m:
        w = m["weight"]
        if role != "assistant":
            issues.append(Issue("weight is only allowed on assistant messages", i, "weight"))
        elif isinstance(w, bool) or w not in (0, 1):
            issues.append(Issue(f"weight must be 0 or 1, got {json.dumps(w)}", i, "weight"))
    for key in ("name", "tool_call_id"):
        if key in m and not isinstance(m[key], str):
            issues.append(Issue(f'"{key}" must be a string, got {json_type(m[key])}', i, key))
    if role == "tool" and "tool_call_id" not in m:
        issues.append(
            Issue(
                'a tool message needs "tool_call_id" (the id of the call it answers)',
                i,
                "tool_call_id",
            )
        )
    if role == "function" and "name" not in m:
        issues.append(Issue('a function message needs "name"', i, "name"))
    if "tool_calls" in m:
        issues += _check_tool_calls(m["tool_calls"], role, i)
    if "function_call" in m:
        issues += _check_function(m["function_call"], i, "function_call")
    return issues


def _check_tool_calls(calls: Any, role: Any, i: int) -> list[Issue]:
    if role != "assistant":
        return [Issue("tool_calls are only allowed on assistant messages", i, "tool_calls")]
    if not isinstance(calls, list) or not calls:
        return [Issue('"tool_calls" must be a non-empty list', i, "tool_calls")]
    issues = []
    for j, call in enumerate(calls):
        where = f"tool_calls[{j}]"
        if not isinstance(call, dict):
            issues.append(Issue(f"must be a JSON object, got {json_type(call)}", i, where))
            continue
        if not isinstance(call.get("id"), str):
            issues.append(Issue('"id" must be a string', i, f"{where}.id"))
        if call.get("type") != "function":
            issues.append(
                Issue(
                    f'"type" must be "function", got {json.dumps(call.get("type"))}',
                    i,
                    f"{where}.type",
                )
            )
        issues += _check_function(call.get("function"), i, f"{where}.function")
    return issues


def _check_function(fn: Any, i: int, where: str) -> list[Issue]:
    if not isinstance(fn, dict):
        return [
            Issue(f'must be an object with "name" and "arguments", got {json_type(fn)}', i, where)
        ]
    issues = []
    if not isinstance(fn.get("name"), str) or not fn["name"]:
        issues.append(Issue('"name" must be a non-empty string', i, f"{where}.name"))
    args = fn.get("arguments")
    if not isinstance(args, str):
        issues.append(
            Issue(
                f'"arguments" must be a JSON string, got {json_type(args)}', i, f"{where}.arguments"
            )
        )
    else:
        try:
            json.loads(args)
        except ValueError:
            issues.append(Issue('"arguments" is not valid JSON', i, f"{where}.arguments"))
    return issues


def _check_functions(obj: dict[str, Any]) -> list[Issue]:
    """The legacy `functions` list and `parallel_tool_calls` of a chat line (contract §14.4)."""
    issues = []
    fns = obj.get("functions")
    if "functions" in obj and not (
        isinstance(fns, list)
        and 1 <= len(fns) <= 128
        and all(isinstance(f, dict) and isinstance(f.get("name"), str) for f in fns)
    ):
        issues.append(
            Issue('"functions" must be a list of 1 to 128 {"name": ...} objects', field="functions")
        )
    if "tools" in obj and "functions" in obj:
        issues.append(Issue('give "tools" or the older "functions", not both', field="functions"))
    if "parallel_tool_calls" in obj and not isinstance(obj["parallel_tool_calls"], bool):
        issues.append(
            Issue('"parallel_tool_calls" must be true or false', field="parallel_tool_calls")
        )
    return issues


def _valid_tools(tools: Any) -> bool:
    return isinstance(tools, list) and all(
        isinstance(t, dict)
        and t.get("type") == "function"
        and isinstance(t.get("function"), dict)
        and isinstance(t["function"].get("name"), str)
        for t in tools
    )
