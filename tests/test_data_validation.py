"""The one validator (upload, job creation, prepare-data) and the example reader."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tunelab.data.examples import iter_examples, normalise
from tunelab.data.validation import MAX_PROBLEMS, MIN_EXAMPLES, validate_file

pytestmark = pytest.mark.unit


def chat(user: str = "你好", assistant: str = "您好！有什么可以帮您？", **extra: object) -> dict:
    return {
        "messages": [
            {"role": "user", "content": user},
            {"role": "assistant", "content": assistant, **extra},
        ]
    }


def write_jsonl(path: Path, rows: list, encoding: str = "utf-8") -> Path:
    path.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding=encoding
    )
    return path


GOOD = [chat(f"question {i}", f"answer {i}") for i in range(MIN_EXAMPLES)]


def test_well_formed_chat_file_passes(tmp_path: Path) -> None:
    report = validate_file(write_jsonl(tmp_path / "ok.jsonl", GOOD))
    assert report.ok and not report.too_few
    assert (report.n_examples, report.format, report.summary()) == (10, "chat", "")


# Each bad example is line 2 of a file whose other lines are good.
BAD_CHAT = [
    ({"messages": []}, '"messages" is missing or empty', None, "messages"),
    ({"msgs": []}, "Unexpected file format", None, None),
    ([1, 2], "expected a JSON object, got array", None, None),
    (
        {"messages": [{"content": "hi"}, {"role": "assistant", "content": "x"}]},
        '"role" is missing',
        1,
        "role",
    ),
    (
        {"messages": [{"role": "robot", "content": "hi"}, {"role": "assistant", "content": "x"}]},
        "unrecognised role 'robot'",
        1,
        "role",
    ),
    (
        {"messages": [{"role": "user"}, {"role": "assistant", "content": "x"}]},
        '"content" is missing',
        1,
        "content",
    ),
    (
        {"messages": [{"role": "user", "content": 5}, {"role": "assistant", "content": "x"}]},
        '"content" must be a string, got number',
        1,
        "content",
    ),
    (chat(mood="happy"), "unrecognised key 'mood'", 2, "mood"),
    ({"messages": [{"role": "user", "content": "hi"}]}, "no assistant message", None, None),
    (chat(weight=0.5), "weight must be 0 or 1, got 0.5", 2, "weight"),
    (chat(weight=True), "weight must be 0 or 1, got true", 2, "weight"),
    (chat(weight=0), "nothing to train on", None, None),
    (
        {
            "messages": [
                {"role": "user", "content": "hi", "weight": 1},
                {"role": "assistant", "content": "x"},
            ]
        },
        "weight is only allowed on assistant messages",
        1,
        "weight",
    ),
    (
        {
            "messages": [
                {"role": "user", "content": "hi"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {
                            "id": "c1",
                            "type": "function",
                            "function": {"name": "f", "arguments": {"a": 1}},
                        }
                    ],
                },
            ]
        },
        '"arguments" must be a JSON string, got object',
        2,
        "tool_calls[0].function.arguments",
    ),
    (
        {
            "messages": [
                {"role": "user", "content": "hi"},
                {
                    "role": "assistant",
                    "tool_calls": [
                        {"id": "c1", "type": "fn", "function": {"name": "f", "arguments": "{}"}}
                    ],
                },
            ]
        },
        '"type" must be "function"',
        2,
        "tool_calls[0].type",
    ),
    (
        {
            "messages": [
                {"role": "user", "content": "hi"},
                {"role": "assistant", "content": "x"},
                {"role": "tool", "content": "42"},
            ]
        },
        'needs "tool_call_id"',
        3,
        "tool_call_id",
    ),
    (
        {"prompt": "a", "completion": 3},
        '"completion" must be a string, got number',
        None,
        "completion",
    ),
    (
        {"instruction": "翻译", "output": None},
        '"output" must be a string, got null',
        None,
        "output",
    ),
    (
        {"conversations": [{"from": "alien", "value": "hi"}]},
        "unrecognised speaker 'alien'",
        1,
        "from",
    ),
]


@pytest.mark.parametrize(("bad", "text", "index", "field"), BAD_CHAT)
def test_each_chat_problem_names_line_message_and_field(
    tmp_path: Path, bad: object, text: str, index: int | None, field: str | None
) -> None:
    report = validate_file(write_jsonl(tmp_path / "bad.jsonl", [GOOD[0], bad, *GOOD[1:]]))
    assert not report.ok
    problem = report.problems[0]
    assert (problem.line, problem.message_index, problem.field) == (2, index, field)
    assert text in problem.message
    assert str(problem).startswith("Line 2") and text in report.summary()


def test_valid_tool_calls_and_weights_pass(tmp_path: Path) -> None:
    tool_chat = {
        "messages": [
            {"role": "system", "content": "You can call tools."},
            {"role": "user", "content": "Weather in 北京?"},
            {
                "role": "assistant",
                "tool_calls": [
                    {
                        "id": "c1",
                        "type": "function",
                        "function": {"name": "weather", "arguments": '{"city": "北京"}'},
                    }
                ],
            },
            {"role": "tool", "tool_call_id": "c1", "content": "晴, 25°C"},
            {"role": "assistant", "content": "北京今天晴，25°C。", "weight": 1},
        ],
        "tools": [{"type": "function", "function": {"name": "weather"}}],
    }
    report = validate_file(
        write_jsonl(
            tmp_path / "t.jsonl",
            [
                tool_chat,
                chat(weight=0)
                | {
                    "messages": [
                        {"role": "user", "content": "a"},
                        {"role": "assistant", "content": "b", "weight": 0},
                        {"role": "user", "content": "c"},
                        {"role": "assistant", "content": "d"},
                    ]
                },
            ]
            * 5,
        )
    )
    assert report.ok, report.summary()


def test_blank_lines_are_skipped_and_examples_numbered(tmp_path: Path) -> None:
    path = tmp_path / "gaps.jsonl"
    path.write_text(json.dumps(GOOD[0]) + "\n\n\n" + '{"messages": 1}\n', encoding="utf-8")
    problem = validate_file(path).problems[0]
    assert (problem.line, problem.example) == (4, 2)
    assert str(problem).startswith("Line 4 (example 2)")


def test_mixed_formats_are_rejected_naming_both_lines(tmp_path: Path) -> None:
    report = validate_file(
        write_jsonl(tmp_path / "m.jsonl", [*GOOD, {"prompt": "p", "completion": "c"}])
    )
    assert str(report.problems[0]) == (
        "Line 11: this example is prompt/completion pairs but line 1 is chat messages; "
        "a file must use one format, so put each format in its own file"
    )


def test_alpaca_and_sharegpt_lines_are_read_as_chat(tmp_path: Path) -> None:
    rows = [
        {
            "instruction": "把这句话翻译成英文",
            "input": "我爱你",
            "output": "I love you",
            "system": "你是翻译",
        },
        {
            "conversations": [
                {"from": "system", "value": "Be brief."},
                {"from": "human", "value": "Hi"},
                {"from": "gpt", "value": "Hello!"},
            ]
        },
    ] * 5
    path = write_jsonl(tmp_path / "community.jsonl", rows)
    report = validate_file(path)
    assert report.ok and report.format == "chat"
    assert report.source_formats == {"alpaca": 5, "sharegpt": 5}
    first, second = list(iter_examples(path))[:2]
    assert first["messages"] == [
        {"role": "system", "content": "你是翻译"},
        {"role": "user", "content": "把这句话翻译成英文\n\n我爱你"},
        {"role": "assistant", "content": "I love you"},
    ]
    assert [m["role"] for m in second["messages"]] == ["system", "user", "assistant"]


def test_normalise_raises_with_the_problem() -> None:
    assert normalise({"prompt": "a", "completion": "b", "extra": 1}) == {
        "prompt": "a",
        "completion": "b",
    }
    with pytest.raises(ValueError, match="message 1: unrecognised role"):
        normalise({"messages": [{"role": "bot", "content": "x"}]})


@pytest.mark.parametrize("encoding", ["utf-8-sig", "utf-16", "gbk"])
def test_encodings_are_detected_and_read_the_same(tmp_path: Path, encoding: str) -> None:
    rows = [
        chat(f"第{i}个问题：今天天气怎么样？", f"第{i}个回答：今天是晴天，适合出门散步。")
        for i in range(12)
    ]
    path = write_jsonl(tmp_path / "zh.jsonl", rows, encoding=encoding)
    report = validate_file(path)
    assert report.ok and report.n_examples == 12, report.summary()
    assert list(iter_examples(path)) == rows


def test_short_gbk_crlf_file_is_not_mistaken_for_korean(tmp_path: Path) -> None:
    rows = [chat(f"你好{i}", "好") for i in range(10)]
    path = tmp_path / "short.jsonl"
    path.write_bytes(
        "".join(json.dumps(r, ensure_ascii=False) + "\r\n" for r in rows).encode("gbk")
    )
    report = validate_file(path)
    assert report.ok and report.encoding == "gb18030"
    assert list(iter_examples(path)) == rows


def test_bad_bytes_in_one_line_name_that_line(tmp_path: Path) -> None:
    path = tmp_path / "broken.jsonl"
    good = (json.dumps(chat(), ensure_ascii=False) + "\n").encode()
    path.write_bytes(good * 3 + b'{"messages": "\xff\xfe"}\n' + good)
    problem = validate_file(path).problems[0]
    assert problem.line == 4 and "not valid utf-8 text" in problem.message
    with pytest.raises(ValueError, match="Line 4"):
        list(iter_examples(path))


@pytest.mark.parametrize(
    ("content", "text"),
    [
        (b"", "The file has no examples"),
        (b"\n\n  \n", "The file has no examples"),
        (b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00" * 50, "does not look like text"),
        (b'[{"messages": []},\n', "not valid JSON"),
        (b'{"prompt": "a", "completion": "b"\n', "not valid JSON"),
        (b'[{"prompt": "a", "completion": "b"}]\n', "`tunelab prepare-data` converts a JSON array"),
    ],
)
def test_bad_files_get_a_clear_problem(tmp_path: Path, content: bytes, text: str) -> None:
    path = tmp_path / "x.jsonl"
    path.write_bytes(content)
    report = validate_file(path)
    assert not report.ok and text in report.summary()


def test_a_100_mb_line_is_reported_without_holding_it(tmp_path: Path) -> None:
    path = tmp_path / "oneline.jsonl"
    with open(path, "wb") as fh:
        fh.write((json.dumps(chat()) + "\n").encode())
        fh.write(b'{"prompt": "' + b"a" * (100 * 1024 * 1024) + b'", "completion": "b"}\n')
        fh.write((json.dumps(chat()) + "\n").encode())
    report = validate_file(path)
    assert report.problem_count == 1 and report.n_examples == 2
    assert report.problems[0].line == 2 and "105 MB long" in report.problems[0].message


def test_too_few_examples_uses_openai_message(tmp_path: Path) -> None:
    report = validate_file(write_jsonl(tmp_path / "few.jsonl", GOOD[:3]))
    assert report.ok and report.too_few
    assert report.summary() == "Training file has 3 example(s), but must have at least 10 examples"


def test_job_error_codes(tmp_path: Path) -> None:
    few = validate_file(write_jsonl(tmp_path / "few.jsonl", GOOD[:2]))
    assert few.job_error() == (
        "invalid_n_examples",
        "Training file has 2 example(s), but must have at least 10 examples",
    )
    assert few.job_error("validation_file") is None
    bad = validate_file(write_jsonl(tmp_path / "bad.jsonl", [*GOOD, {"messages": []}]))
    code, message = bad.job_error("validation_file")
    assert code == "invalid_validation_file"
    assert message.startswith("The job failed due to an invalid validation file. Line 11")
    assert validate_file(write_jsonl(tmp_path / "ok.jsonl", GOOD)).job_error() is None


def test_problems_are_capped_but_counted(tmp_path: Path) -> None:
    path = tmp_path / "junk.jsonl"
    path.write_text("nope\n" * 150, encoding="utf-8")
    report = validate_file(path)
    assert (len(report.problems), report.problem_count) == (MAX_PROBLEMS, 150)
    assert report.summary().endswith("(and 145 more problems)")


def test_progress_reports_bytes(tmp_path: Path) -> None:
    path = write_jsonl(tmp_path / "p.jsonl", GOOD * 500)
    seen: list[int] = []
    validate_file(path, on_progress=seen.append)
    assert seen == sorted(seen) and seen[-1] == path.stat().st_size


def test_legacy_functions_lines_pass_and_bad_ones_name_the_field(tmp_path: Path) -> None:
    line = {
        "messages": [
            {"role": "user", "content": "Weather in Paris?"},
            {"role": "assistant", "function_call": {"name": "weather", "arguments": "{}"}},
            {"role": "function", "name": "weather", "content": "21 C"},
            {"role": "assistant", "content": "21 C."},
        ],
        "functions": [{"name": "weather"}],
        "parallel_tool_calls": False,
    }
    assert validate_file(write_jsonl(tmp_path / "ok.jsonl", [line] * 10)).ok
    bad = [line | {"functions": [{"description": "no name"}]}, line | {"parallel_tool_calls": 1}]
    report = validate_file(write_jsonl(tmp_path / "bad.jsonl", [line, *bad, *[line] * 8]))
    assert [(p.line, p.field) for p in report.problems] == [
        (2, "functions"),
        (3, "parallel_tool_calls"),
    ]
