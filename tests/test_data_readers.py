"""Reading CSV/TSV/XLSX/TXT/JSON/JSONL into records with line numbers and encodings."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunelab.data.readers import read_records
from tunelab.data.text import UnreadableFile, detect_encoding

pytestmark = pytest.mark.unit


def test_gbk_csv_from_chinese_excel(tmp_path: Path) -> None:
    path = tmp_path / "客服.csv"
    path.write_text(
        'prompt,completion\r\n退货怎么办？,"请在七天内联系客服，\r\n我们会安排上门取件。"\r\n发票呢？,开具电子发票\r\n',
        encoding="gbk",
    )
    read = read_records(path)
    assert read.encoding == "gb18030" and read.needs_conversion
    assert [(r.line, r.obj["prompt"]) for r in read.records] == [
        (2, "退货怎么办？"),
        (4, "发票呢？"),
    ]
    assert read.records[0].obj["completion"] == "请在七天内联系客服，\n我们会安排上门取件。"
    assert any("gb18030" in n for n in read.notes)


def test_xlsx_first_sheet_numbers_as_text(tmp_path: Path) -> None:
    from openpyxl import Workbook

    book = Workbook()
    sheet = book.active
    sheet.append(["prompt", "completion"])
    sheet.append(["1+1=", 2])
    sheet.append([None, None])
    sheet.append(["天空是什么颜色？", "蓝色"])
    book.create_sheet("notes").append(["ignored"])
    path = tmp_path / "data.xlsx"
    book.save(path)
    read = read_records(path)
    assert [(r.line, r.obj) for r in read.records] == [
        (2, {"prompt": "1+1=", "completion": "2"}),
        (4, {"prompt": "天空是什么颜色？", "completion": "蓝色"}),
    ]
    assert "only the first one, `Sheet`, is read" in read.notes[0]


def test_tsv_and_txt(tmp_path: Path) -> None:
    tsv = tmp_path / "d.tsv"
    tsv.write_text("prompt\tcompletion\nhello, world\thi\n", encoding="utf-8")
    assert read_records(tsv).records[0].obj == {"prompt": "hello, world", "completion": "hi"}
    txt = tmp_path / "d.txt"
    txt.write_text("第一行\n\nthird\n", encoding="utf-8")
    assert [r.obj["completion"] for r in read_records(txt).records] == ["第一行", "", "third"]


def test_json_array_items_keep_their_lines(tmp_path: Path) -> None:
    path = tmp_path / "d.json"
    path.write_text(
        '[\n  {"prompt": "a",\n   "completion": "b"},\n  {"prompt": "c", "completion": "d"}\n]\n'
    )
    read = read_records(path)
    assert [r.line for r in read.records] == [2, 4]
    assert "appears to be a JSON document" not in " ".join(read.notes)


def test_json_object_of_columns_and_json_lines_saved_as_json(tmp_path: Path) -> None:
    cols = tmp_path / "cols.json"
    cols.write_text(json.dumps({"prompt": ["a", "b"], "completion": ["x", "y"]}))
    assert [r.obj for r in read_records(cols).records] == [
        {"prompt": "a", "completion": "x"},
        {"prompt": "b", "completion": "y"},
    ]
    lines = tmp_path / "lines.json"
    lines.write_text('{"prompt": "a", "completion": "x"}\n{"prompt": "b", "completion": "y"}\n')
    read = read_records(lines)
    assert len(read.records) == 2 and "appears to be in JSONL format" in read.notes[0]


def test_jsonl_holding_one_json_array(tmp_path: Path) -> None:
    path = tmp_path / "arr.jsonl"
    path.write_text(json.dumps([{"prompt": "a", "completion": "x"}] * 3))
    read = read_records(path)
    assert len(read.records) == 3 and read.needs_conversion


@pytest.mark.parametrize(
    ("name", "content", "message"),
    [
        ("empty.csv", b"", "is empty"),
        (
            "header.csv",
            b"prompt,completion\n",
            "has a header row (prompt, completion) but no data rows",
        ),
        (
            "extra.csv",
            b"prompt,completion\na,b\nc,d,e\n",
            "Line 3 has 3 fields but the header has 2",
        ),
        (
            "cut.json",
            b'[{"prompt": "a",\n "completion": "b"},\n {"prompt": "c"',
            "Line 3: the file does not appear to be in valid JSON",
        ),
        ("ragged.json", b'{"prompt": ["a"], "completion": []}', "different lengths"),
        ("scalar.json", b"42", "must hold an array of examples"),
        ("data.parquet", b"PAR1", "has the `.parquet` extension"),
        ("noext", b"x", "a missing file extension"),
        ("binary.csv", b"\x00\x01\x02\xff" * 100, "does not look like text"),
        ("bad.xlsx", b"not a zip file", "does not appear to be in valid XLSX format"),
    ],
)
def test_unreadable_files_say_what_to_do(
    tmp_path: Path, name: str, content: bytes, message: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(UnreadableFile, match=None) as info:
        read_records(path)
    assert message in str(info.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(UnreadableFile, match="does not exist"):
        read_records(tmp_path / "nope.csv")


def test_encoding_detection() -> None:
    zh = "今天天气很好，我们去公园散步吧。" * 5
    assert detect_encoding(zh.encode("utf-8")) == "utf-8"
    assert detect_encoding(b"\xef\xbb\xbf" + zh.encode("utf-8")) == "utf-8-sig"
    assert detect_encoding(zh.encode("utf-16")) == "utf-16"
    assert detect_encoding(zh.encode("gbk")) == "gb18030"
