"""A run's report as one self-contained HTML page (what `report_url` opens).

Plain HTML and a little CSS, no scripts: the counts, each criterion's pass rate,
token usage, and every row with its sample and grades. The dashboard renders the
same data richer from the JSON form (`?format=json`).
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from tunelab.evals.service import Report

_STYLE = """
body{font-family:system-ui,sans-serif;margin:2em;max-width:72em;color:#222}
table{border-collapse:collapse;margin:1em 0}td,th{border:1px solid #ccc;padding:.3em .6em;
vertical-align:top;text-align:left}th{background:#f4f4f4}.pass{color:#176b2c}.fail{color:#a4161a}
pre{white-space:pre-wrap;margin:0;font-size:.9em;max-width:40em}
"""


def _table(headers: list[str], rows: list[list[str]]) -> str:
    head = "".join(f"<th>{escape(h)}</th>" for h in headers)
    body = "".join("<tr>" + "".join(f"<td>{c}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"


def _pre(value: Any) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False, indent=1)
    return f"<pre>{escape(text)}</pre>"


def render_report(report: Report) -> str:
    run, ev = report.run, report.eval
    counts = run.result_counts
    parts = [
        f"<h1>{escape(ev.name or ev.id)}: {escape(run.name)}</h1>",
        f"<p>Run <code>{escape(run.id)}</code> of eval <code>{escape(ev.id)}</code>, model "
        f"<b>{escape(run.model or '(given samples)')}</b>, status <b>{escape(run.status)}</b> "
        f"({run.progress.completed} of {run.progress.total} rows graded).</p>",
        _table(
            ["passed", "failed", "errored", "total"],
            [[str(counts.passed), str(counts.failed), str(counts.errored), str(counts.total)]],
        ),
    ]
    if run.error is not None:
        parts.append(
            f"<p class=fail>Error {escape(run.error.code)}: {escape(run.error.message)}</p>"
        )
    if run.per_testing_criteria_results:
        parts.append("<h2>Criteria</h2>")
        parts.append(
            _table(
                ["criterion", "passed", "failed", "pass rate"],
                [
                    [
                        escape(r.testing_criteria),
                        str(r.passed),
                        str(r.failed),
                        f"{r.passed / max(1, r.passed + r.failed):.1%}",
                    ]
                    for r in run.per_testing_criteria_results
                ],
            )
        )
    if run.per_model_usage:
        parts.append("<h2>Usage</h2>")
        parts.append(
            _table(
                ["model", "calls", "prompt tokens", "completion tokens"],
                [
                    [
                        escape(u.model_name),
                        str(u.invocation_count),
                        str(u.prompt_tokens),
                        str(u.completion_tokens),
                    ]
                    for u in run.per_model_usage
                ],
            )
        )
    parts.append("<h2>Rows</h2>")
    rows = []
    for item in report.items:
        output = (item.sample or {}).get("output") or []
        answer = output[0].get("content", "") if output else (item.sample or {}).get("output_text")
        grades = "<br>".join(
            f"<span class={'pass' if r.get('passed') else 'fail'}>{escape(str(r.get('name')))}: "
            f"{float(r.get('score') or 0):.3g}</span>"
            + (f" ({escape(str(r['error']))})" if r.get("error") else "")
            for r in item.results
        )
        rows.append(
            [
                str(item.datasource_item_id),
                f"<span class={item.status}>{item.status}</span>",
                _pre(item.datasource_item),
                _pre(answer or ""),
                grades or escape(str(((item.sample or {}).get("error") or {}).get("message", ""))),
            ]
        )
    parts.append(_table(["#", "status", "item", "answer", "grades"], rows))
    return (
        f"<!doctype html><html><head><meta charset=utf-8><title>{escape(run.name)}</title>"
        f"<style>{_STYLE}</style></head><body>{''.join(parts)}</body></html>"
    )
