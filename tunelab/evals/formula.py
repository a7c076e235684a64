"""The `calculate_output` formula of a multi grader: arithmetic over sub-grader scores.

Grammar (OpenAI's): numbers, the sub-graders' names, `+ - * / ^` (power) and
parentheses, and the functions `min max abs floor ceil exp sqrt log`. The text is
parsed with Python's own parser into an expression tree and evaluated by walking
only those node kinds; anything else (attributes, calls of other names,
comparisons, subscripts) is refused when the eval is created, so evaluating never
runs arbitrary code.
"""

from __future__ import annotations

import ast
import math
import operator
from collections.abc import Callable, Mapping

FUNCTIONS: dict[str, Callable[..., float]] = {
    "min": min,
    "max": max,
    "abs": abs,
    "floor": math.floor,
    "ceil": math.ceil,
    "exp": math.exp,
    "sqrt": math.sqrt,
    "log": math.log,
}
_BINARY: dict[type[ast.operator], Callable[[float, float], float]] = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
}


class FormulaError(ValueError):
    pass


def _parse(expression: str) -> ast.expr:
    # `^` is power in OpenAI's formulas; Python spells it `**`.
    try:
        return ast.parse(expression.replace("^", "**"), mode="eval").body
    except SyntaxError:
        raise FormulaError(f"{expression!r} is not a valid formula") from None


def _walk(node: ast.expr, env: Mapping[str, float] | None, names: set[str]) -> float:
    """Evaluate (env given) or only check (env None) one node."""
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        if isinstance(node.value, bool):
            raise FormulaError("booleans are not numbers here")
        return float(node.value)
    if isinstance(node, ast.Name):
        if node.id not in names:
            raise FormulaError(f"unknown name {node.id!r}; use the graders' names: {sorted(names)}")
        return env[node.id] if env is not None else 0.0
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub | ast.UAdd):
        v = _walk(node.operand, env, names)
        return -v if isinstance(node.op, ast.USub) else v
    if isinstance(node, ast.BinOp) and type(node.op) in _BINARY:
        left, right = _walk(node.left, env, names), _walk(node.right, env, names)
        return _BINARY[type(node.op)](left, right) if env is not None else 0.0
    if (
        isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in FUNCTIONS
        and not node.keywords
        and node.args
    ):
        args = [_walk(a, env, names) for a in node.args]
        return float(FUNCTIONS[node.func.id](*args)) if env is not None else 0.0
    raise FormulaError(
        f"'{ast.unparse(node)}' is not allowed; use numbers, grader names, + - * / ^, "
        f"parentheses and {', '.join(FUNCTIONS)}"
    )


def check(expression: str, names: set[str]) -> None:
    """Raise FormulaError when the formula uses anything outside the grammar."""
    _walk(_parse(expression), None, names)


def evaluate(expression: str, scores: Mapping[str, float]) -> float:
    """The formula's value; math errors (division by zero, log of 0) raise FormulaError."""
    try:
        value = _walk(_parse(expression), scores, set(scores))
    except (ArithmeticError, ValueError) as e:
        if isinstance(e, FormulaError):
            raise
        raise FormulaError(f"cannot compute {expression!r}: {e}") from None
    if isinstance(value, complex) or not math.isfinite(value):
        raise FormulaError(f"{expression!r} has no finite real value for these scores")
    return float(value)
