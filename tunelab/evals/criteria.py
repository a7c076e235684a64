"""Testing criteria (graders): checked once when an eval is created, then typed.

`parse_criteria` turns the request's `testing_criteria` into `Criterion` values and
their echo (each gains `"id": "<name>-<uuid>"`; message inputs are normalised to
`{"type": "message", "role", "content": {"type": "input_text", "text"}}`; template
spacing is normalised). The echo is what the eval stores and returns; parsing the
echo again gives the same criteria, which is how a run reads them back.

Every refusal names its field (`testing_criteria[2].labels`). The `python` grader
is refused: running user code needs a sandbox (no network, bounded memory, CPU and
time) that tunelab does not provide.
"""

from __future__ import annotations

import math
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tunelab.errors import InvalidRequest
from tunelab.evals import formula
from tunelab.evals.similarity import METRICS, metric_unavailable
from tunelab.evals.templates import check_against_schema, normalise

STRING_OPERATIONS = ("eq", "ne", "like", "ilike")
MESSAGE_ROLES = ("user", "assistant", "system", "developer")
GRADER_TYPES = ("string_check", "text_similarity", "label_model", "score_model", "multi", "python")

# (project, model, param) -> None, or raises a 400 naming param.
ModelCheck = Callable[[str, str, str], None]


@dataclass(frozen=True)
class Message:
    role: str
    content: str  # a template


@dataclass(frozen=True)
class StringCheck:
    id: str
    name: str
    input: str
    reference: str
    operation: str


@dataclass(frozen=True)
class TextSimilarity:
    id: str
    name: str
    input: str
    reference: str
    metric: str
    pass_threshold: float


@dataclass(frozen=True)
class JudgeSampling:
    temperature: float = 0.0
    top_p: float = 1.0
    seed: int | None = None
    max_tokens: int | None = None


@dataclass(frozen=True)
class LabelModel:
    id: str
    name: str
    model: str
    input: tuple[Message, ...]
    labels: tuple[str, ...]
    passing_labels: tuple[str, ...]


@dataclass(frozen=True)
class ScoreModel:
    id: str
    name: str
    model: str
    input: tuple[Message, ...]
    low: float
    high: float
    sampling: JudgeSampling
    pass_threshold: float | None


Simple = StringCheck | TextSimilarity | LabelModel | ScoreModel


@dataclass(frozen=True)
class Multi:
    id: str
    name: str
    graders: dict[str, Simple]
    calculate_output: str
    pass_threshold: float


Criterion = Simple | Multi


def _bad(param: str, message: str, code: str = "invalid_value") -> InvalidRequest:
    return InvalidRequest(message, param=param, code=code)


def _str(d: Mapping[str, Any], key: str, param: str) -> str:
    value = d.get(key)
    if not isinstance(value, str) or not value:
        raise _bad(f"{param}.{key}", f"{param}.{key} is required and must be a non-empty string.")
    return value


def _number(d: Mapping[str, Any], key: str, param: str, *, required: bool) -> float | None:
    value = d.get(key)
    if value is None:
        if required:
            raise _bad(f"{param}.{key}", f"{param}.{key} is required: give a number.")
        return None
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _bad(f"{param}.{key}", f"{param}.{key} must be a number, got {value!r}.")
    return float(value)


def _template(d: Mapping[str, Any], key: str, param: str, schema: Mapping[str, Any]) -> str:
    text = d.get(key)
    if not isinstance(text, str):
        raise _bad(f"{param}.{key}", f"{param}.{key} is required and must be a string template.")
    text = normalise(text, f"{param}.{key}")
    check_against_schema(text, f"{param}.{key}", schema)
    return text


def message_text(content: Any, param: str) -> str:
    """The text of a message's content: a string, an input_text/output_text part, or a
    list of such parts."""
    if isinstance(content, str):
        return content
    parts = content if isinstance(content, list) else [content]
    out = []
    for i, part in enumerate(parts):
        where = f"{param}[{i}]" if isinstance(content, list) else param
        if not isinstance(part, Mapping) or part.get("type") not in ("input_text", "output_text"):
            kind = part.get("type") if isinstance(part, Mapping) else type(part).__name__
            raise _bad(where, f"{where} is of type {kind!r}; only text content is supported.")
        text = part.get("text")
        if not isinstance(text, str):
            raise _bad(f"{where}.text", f"{where}.text must be a string.")
        out.append(text)
    return "".join(out)


def parse_messages(raw: Any, param: str, schema: Mapping[str, Any]) -> tuple[Message, ...]:
    if not isinstance(raw, list) or not raw:
        raise _bad(param, f"{param} must be a non-empty list of messages ({{role, content}}).")
    out = []
    for i, m in enumerate(raw):
        where = f"{param}[{i}]"
        if not isinstance(m, Mapping):
            raise _bad(where, f"{where} must be a message object with 'role' and 'content'.")
        if m.get("type", "message") != "message":
            raise _bad(f"{where}.type", f"{where}.type must be 'message'.")
        role = m.get("role")
        if role not in MESSAGE_ROLES:
            raise _bad(f"{where}.role", f"{where}.role must be one of {', '.join(MESSAGE_ROLES)}.")
        text = normalise(message_text(m.get("content"), f"{where}.content"), f"{where}.content")
        check_against_schema(text, f"{where}.content", schema)
        out.append(Message(str(role), text))
    return tuple(out)


def messages_echo(messages: tuple[Message, ...]) -> list[dict[str, Any]]:
    return [
        {"type": "message", "role": m.role, "content": {"type": "input_text", "text": m.content}}
        for m in messages
    ]


def _labels(d: Mapping[str, Any], key: str, param: str) -> tuple[str, ...]:
    value = d.get(key)
    if not isinstance(value, list) or not all(isinstance(x, str) and x for x in value):
        raise _bad(f"{param}.{key}", f"{param}.{key} must be a list of non-empty strings.")
    return tuple(value)


def _sampling(raw: Any, param: str) -> JudgeSampling:
    if raw is None:
        return JudgeSampling()
    if not isinstance(raw, Mapping):
        raise _bad(param, f"{param} must be an object.")
    known = {"temperature", "top_p", "seed", "max_completions_tokens", "reasoning_effort"}
    for key in raw:
        if key not in known:
            raise _bad(f"{param}.{key}", f"{param}.{key} is not a score_model sampling parameter.")
    if raw.get("reasoning_effort") is not None:
        raise _bad(
            f"{param}.reasoning_effort",
            "reasoning_effort applies to reasoning models; tunelab's judges are not, so "
            "leave it out.",
        )
    temperature = _number(raw, "temperature", param, required=False)
    top_p = _number(raw, "top_p", param, required=False)
    seed, max_tokens = raw.get("seed"), raw.get("max_completions_tokens")
    for key, v in (("seed", seed), ("max_completions_tokens", max_tokens)):
        if v is not None and (isinstance(v, bool) or not isinstance(v, int) or v < 0):
            raise _bad(f"{param}.{key}", f"{param}.{key} must be a non-negative integer.")
    return JudgeSampling(
        temperature=0.0 if temperature is None else temperature,
        top_p=1.0 if top_p is None else top_p,
        seed=seed,
        max_tokens=max_tokens,
    )


def _parse_one(
    raw: Mapping[str, Any],
    param: str,
    schema: Mapping[str, Any],
    check_model: ModelCheck | None,
    project: str,
    *,
    nested: bool = False,
) -> tuple[Criterion, dict[str, Any]]:
    kind = raw.get("type")
    if kind not in GRADER_TYPES:
        raise _bad(
            f"{param}.type",
            f"{param}.type is {kind!r}; use one of {', '.join(GRADER_TYPES[:-1])}.",
            "unsupported_grader",
        )
    if kind == "python":
        raise _bad(
            f"{param}.type",
            "python graders are not available on tunelab: running your code safely needs a "
            "sandbox (no network, bounded memory, CPU and time) that this server does not "
            "have. Express the check with string_check, text_similarity, a model grader, or "
            "multi.",
            "unsupported_grader",
        )
    name = _str(raw, "name", param)
    given_id = raw.get("id")
    cid = given_id if isinstance(given_id, str) else f"{name}-{uuid.uuid4()}"
    echo: dict[str, Any] = {"type": kind, "name": name}
    if not nested:
        echo["id"] = cid
    crit: Criterion
    if kind == "string_check":
        op = raw.get("operation")
        if op not in STRING_OPERATIONS:
            raise _bad(
                f"{param}.operation",
                f"{param}.operation is {op!r}; use one of {', '.join(STRING_OPERATIONS)}.",
            )
        crit = StringCheck(
            cid,
            name,
            _template(raw, "input", param, schema),
            _template(raw, "reference", param, schema),
            str(op),
        )
        echo.update(input=crit.input, reference=crit.reference, operation=crit.operation)
    elif kind == "text_similarity":
        metric = raw.get("evaluation_metric")
        if metric not in METRICS:
            raise _bad(
                f"{param}.evaluation_metric",
                f"{param}.evaluation_metric is {metric!r}; use one of {', '.join(METRICS)}.",
            )
        why = metric_unavailable(str(metric))
        if why is not None:
            raise _bad(f"{param}.evaluation_metric", why, "unsupported_metric")
        threshold = _number(raw, "pass_threshold", param, required=not nested)
        crit = TextSimilarity(
            cid,
            name,
            _template(raw, "input", param, schema),
            _template(raw, "reference", param, schema),
            str(metric),
            1.0 if threshold is None else threshold,
        )
        echo.update(input=crit.input, reference=crit.reference, evaluation_metric=crit.metric)
        if threshold is not None:
            echo["pass_threshold"] = threshold
    elif kind in ("label_model", "score_model"):
        model = _str(raw, "model", param)
        if check_model is not None:
            check_model(project, model, f"{param}.model")
        messages = parse_messages(raw.get("input"), f"{param}.input", schema)
        echo.update(model=model, input=messages_echo(messages))
        if kind == "label_model":
            labels = _labels(raw, "labels", param)
            passing = _labels(raw, "passing_labels", param)
            if len(set(labels)) < 2:
                raise _bad(f"{param}.labels", f"{param}.labels needs at least two labels.")
            stray = [p for p in passing if p not in labels]
            if stray:
                raise _bad(
                    f"{param}.passing_labels",
                    f"{param}.passing_labels has {stray[0]!r}, which is not one of the labels.",
                )
            crit = LabelModel(cid, name, model, messages, labels, passing)
            echo.update(labels=list(labels), passing_labels=list(passing))
        else:
            rng = raw.get("range", [0, 1])
            if (
                not isinstance(rng, list)
                or len(rng) != 2
                or not all(isinstance(x, int | float) and not isinstance(x, bool) for x in rng)
                or not rng[0] < rng[1]
            ):
                raise _bad(f"{param}.range", f"{param}.range must be two numbers [low, high].")
            sampling = _sampling(raw.get("sampling_params"), f"{param}.sampling_params")
            threshold = _number(raw, "pass_threshold", param, required=False)
            crit = ScoreModel(
                cid, name, model, messages, float(rng[0]), float(rng[1]), sampling, threshold
            )
            echo.update(range=[float(rng[0]), float(rng[1])], pass_threshold=threshold)
            if raw.get("sampling_params") is not None:
                echo["sampling_params"] = raw["sampling_params"]
    else:  # multi
        if nested:
            raise _bad(f"{param}.type", "a multi grader cannot contain another multi grader.")
        subs_raw = raw.get("graders")
        if not isinstance(subs_raw, Mapping) or not subs_raw:
            raise _bad(
                f"{param}.graders",
                f"{param}.graders must be an object mapping names to graders.",
            )
        subs: dict[str, Simple] = {}
        subs_echo: dict[str, Any] = {}
        for key, sub in subs_raw.items():
            where = f"{param}.graders.{key}"
            if not isinstance(sub, Mapping):
                raise _bad(where, f"{where} must be a grader object.")
            parsed, sub_echo = _parse_one(sub, where, schema, check_model, project, nested=True)
            assert not isinstance(parsed, Multi)
            subs[str(key)] = parsed
            subs_echo[str(key)] = sub_echo
        expression = _str(raw, "calculate_output", param)
        try:
            formula.check(expression, set(subs))
        except formula.FormulaError as e:
            raise _bad(f"{param}.calculate_output", f"{param}.calculate_output: {e}") from None
        threshold = _number(raw, "pass_threshold", param, required=True)
        assert threshold is not None
        crit = Multi(cid, name, subs, expression, threshold)
        echo.update(graders=subs_echo, calculate_output=expression, pass_threshold=threshold)
    return crit, echo


def parse_criteria(
    raw: Any,
    item_schema: Mapping[str, Any],
    *,
    project: str = "",
    check_model: ModelCheck | None = None,
) -> tuple[list[Criterion], list[dict[str, Any]]]:
    """(criteria, their echo) — or a 400 naming the first bad field."""
    if not isinstance(raw, list) or not raw:
        raise _bad("testing_criteria", "testing_criteria must be a non-empty list of graders.")
    criteria, echoes, names = [], [], set()
    for i, c in enumerate(raw):
        param = f"testing_criteria[{i}]"
        if not isinstance(c, Mapping):
            raise _bad(param, f"{param} must be a grader object.")
        crit, echo = _parse_one(c, param, item_schema, check_model, project)
        if crit.name in names:
            raise _bad(f"{param}.name", f"{param}.name {crit.name!r} is used twice.")
        names.add(crit.name)
        criteria.append(crit)
        echoes.append(echo)
    return criteria, echoes
