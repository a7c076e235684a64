"""The sample data in examples/ reads as intended: the messy spreadsheets need (and get)
prepare-data's fixes, the classification set is detected and split, and the manual
Q&A's key facts are really in the manual (Markdown and PDF)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import openpyxl
import pytest

from tunelab.cli.data import ClickConsole, _tokenizer_loader
from tunelab.data.prepare import Options, prepare
from tunelab.data.readers import read_records
from tunelab.data.validation import validate_file

pytestmark = pytest.mark.unit

EXAMPLES = Path(__file__).resolve().parent.parent / "examples"


def _rows(path: Path) -> list[dict]:
    return [
        json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()
    ]


def _prepare(tmp_path: Path, name: str) -> list[Path]:
    opts = Options(
        path=EXAMPLES / name,
        model="smollm2-135m-instruct",
        output=tmp_path / "out.jsonl",
        stats=False,
    )
    outcome = prepare(opts, ClickConsole(quiet=True), _tokenizer_loader)
    assert outcome.exit_code == 0
    return outcome.written


def test_gbk_csv_is_decoded_and_its_problems_fixed(tmp_path: Path) -> None:
    raw = (EXAMPLES / "support_qa_gbk.csv").read_bytes()
    try:
        raw.decode("utf-8")
        raise AssertionError("the sample must not be UTF-8")
    except UnicodeDecodeError:
        pass
    read = read_records(EXAMPLES / "support_qa_gbk.csv")
    assert read.encoding and read.encoding.lower().replace("-", "") in ("gbk", "gb18030", "gb2312")
    prompts = [r.obj["prompt"] for r in read.records]
    assert "多久能发货？" in prompts
    assert len(prompts) != len(set(prompts)), "the sample has duplicate rows to remove"

    (out,) = _prepare(tmp_path, "support_qa_gbk.csv")
    rows = _rows(out)
    assert len(rows) < len(read.records)  # duplicates dropped
    separator = rows[0]["prompt"][len(rows[0]["prompt"].rstrip(" ->#\n")) :]
    assert separator and all(r["prompt"].endswith(separator) for r in rows)
    assert all(r["completion"].startswith(" ") for r in rows)
    assert all(r["completion"].endswith("\n") for r in rows)  # the stop sequence
    assert "多久能发货？" in out.read_text(encoding="utf-8")  # written as readable UTF-8


def test_xlsx_headers_extra_column_empty_and_duplicate_rows(tmp_path: Path) -> None:
    read = read_records(EXAMPLES / "support_qa.xlsx")
    assert read.records[0].obj.keys() == {"Prompt", "Completion", "Channel"}
    assert any(r.obj["Prompt"].strip() and not r.obj["Completion"].strip() for r in read.records)
    sheet = openpyxl.load_workbook(EXAMPLES / "support_qa.xlsx").active
    assert any(all(c.value is None for c in row) for row in sheet.iter_rows())  # blank rows
    (out,) = _prepare(tmp_path, "support_qa.xlsx")
    rows = _rows(out)
    assert all(r.keys() == {"prompt", "completion"} for r in rows)
    assert all(r["prompt"].strip() and r["completion"].strip() for r in rows)
    assert len({(r["prompt"], r["completion"]) for r in rows}) == len(rows)
    assert any(re.search(r"[\u4e00-\u9fff]", r["prompt"]) for r in rows)


def test_tickets_are_detected_as_classification_and_split(tmp_path: Path) -> None:
    train, valid = _prepare(tmp_path, "tickets.csv")
    train_rows, valid_rows = _rows(train), _rows(valid)
    classes = {r["completion"].strip() for r in train_rows}
    assert classes == {"billing", "shipping", "technical", "account"}
    assert len(valid_rows) == len(train_rows) + len(valid_rows) - int(
        (len(train_rows) + len(valid_rows)) * 0.8
    )
    assert {r["completion"].strip() for r in valid_rows} <= classes


def test_persona_set_is_valid_and_every_answer_has_the_greeting() -> None:
    report = validate_file(EXAMPLES / "persona.jsonl")
    assert report.ok and report.n_examples == 30
    answers = [r["messages"][-1]["content"] for r in _rows(EXAMPLES / "persona.jsonl")]
    assert all(a.startswith("Ahoy, matey! ") for a in answers)
    assert len({r["messages"][0]["content"] for r in _rows(EXAMPLES / "persona.jsonl")}) == 30


def test_manual_facts_are_in_the_manual_and_held_out_questions_are_new() -> None:
    from pypdf import PdfReader

    train, held = (
        _rows(EXAMPLES / "manual_qa_train.jsonl"),
        _rows(EXAMPLES / "manual_qa_heldout.jsonl"),
    )
    assert {r["question"] for r in train}.isdisjoint(r["question"] for r in held)
    md = (EXAMPLES / "manual" / "router_manual.md").read_text(encoding="utf-8").lower()
    pdf = " ".join(
        " ".join(
            p.extract_text() for p in PdfReader(EXAMPLES / "manual" / "router_manual.pdf").pages
        ).split()
    ).lower()
    for row in train + held:
        fact = row["must_contain"].lower()
        assert fact in row["answer"].lower() or row in train, row
        assert fact in md and fact in pdf, row
    assert "恢复出厂设置" in (EXAMPLES / "manual" / "router_manual_zh.md").read_text(
        encoding="utf-8"
    )
