"""`tunelab prepare-data`: the legacy checks and fixes, chat conversion, bad input, the CLI flow.

Most runs use --no-stats (no tokenizer needed); statistics and --show-masks run on
the real SmolLM2 tokenizer in the realmodel tests at the end.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from tunelab.cli.data import prepare_data
from tunelab.data.examples import iter_examples
from tunelab.data.validation import validate_file
from tunelab.settings import Settings

pytestmark = pytest.mark.unit

Run = Callable[..., Result]


@pytest.fixture
def run(settings: Settings) -> Run:
    env = {
        "TUNELAB_DATA_DIR": str(settings.data_dir),
        "TUNELAB_CACHE_DIR": str(settings.model_cache_dir),
    }

    def _run(path: Path, *args: str, input: str | None = None, stats: bool = False) -> Result:
        argv = ["-f", str(path), *args] + ([] if stats else ["--no-stats"])
        return CliRunner().invoke(prepare_data, argv, input=input, env=env)

    return _run


def jsonl(path: Path, rows: list[Any]) -> Path:
    path.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8"
    )
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_csv_gets_every_necessary_and_recommended_fix_with_q(tmp_path: Path, run: Run) -> None:
    path = tmp_path / "qa.csv"
    rows = [
        ("What is 2+2?", "4"),
        ("Capital of France?", "Paris"),
        ("Colour of the sky?", "blue"),
        ("What is 2+2?", "4"),
        ("Largest ocean?", "Pacific"),
        ("Empty one?", ""),
    ]
    rows += [(f"Square of {i}?", str(i * i)) for i in range(3, 12)]
    path.write_text(
        "Prompt,COMPLETION,source\n" + "".join(f"{p},{c},x\n" for p, c in rows), encoding="utf-8"
    )
    result = run(path, "-q")
    out = result.output
    assert result.exit_code == 0, out
    expected_in_order = [
        "Analyzing...",
        "your file is formatted as a CSV file",
        "Your file contains 15 prompt-completion pairs. "
        "In general, we recommend having at least a few hundred",
        "The `prompt` column/key should be lowercase",
        "The `completion` column/key should be lowercase",
        "Additional columns/keys present are: ['source']",
        "`completion` column/key should not contain empty strings. These are rows on lines: 7",
        "There are 1 duplicated prompt-completion sets. These are rows on lines: 5",
        "All prompts end with suffix `?`",
        "Your data does not contain a common ending at the end of your completions",
        "The completion should start with a whitespace character",
        "Based on the analysis we will perform the following actions:",
        "- [Necessary] Your format `CSV` will be converted to `JSONL`",
        "- [Necessary] Lower case column name to `prompt`",
        "- [Necessary] Remove additional columns/keys: ['source']",
        "- [Necessary] Remove 1 rows with empty completions",
        "- [Recommended] Remove 1 duplicate rows [Y/n]: Y",
        "- [Recommended] Add a suffix ending `\\n` to all completions [Y/n]: Y",
        "- [Recommended] Add a whitespace character to the beginning of the completion [Y/n]: Y",
        "Your data will be written to a new JSONL file. Proceed [Y/n]: Y",
        f"Wrote modified file to `{tmp_path / 'qa_prepared.jsonl'}`",
        f'> tunelab jobs create -t "{tmp_path / "qa_prepared.jsonl"}" -m smollm2-135m-instruct',
        "your prompt has to end with the indicator string `?`",
        'Make sure to include `stop=["\\n"]`',
    ]
    positions = [out.find(s) for s in expected_in_order]
    assert -1 not in positions, [
        s for s, p in zip(expected_in_order, positions, strict=False) if p < 0
    ]
    assert positions == sorted(positions)
    written = read_jsonl(tmp_path / "qa_prepared.jsonl")
    assert written[:3] == [
        {"prompt": "What is 2+2?", "completion": " 4\n"},
        {"prompt": "Capital of France?", "completion": " Paris\n"},
        {"prompt": "Colour of the sky?", "completion": " blue\n"},
    ]
    assert len(written) == 13
    assert validate_file(tmp_path / "qa_prepared.jsonl").ok


def conditional_rows(n: int = 12) -> list[dict[str, str]]:
    return [{"prompt": f"WORD NUMBER {i}", "completion": f" value {i}\n"} for i in range(n)]


def test_interactive_answers_are_respected(tmp_path: Path, run: Run) -> None:
    path = jsonl(tmp_path / "words.jsonl", conditional_rows())
    # lowercase prompts: n; add separator: Enter (yes); strip completion prefix: y; proceed: Enter
    result = run(path, input="n\n\ny\n\n")
    assert result.exit_code == 0, result.output
    assert "More than a third of your `prompt` column/key is uppercase" in result.output
    assert "All prompts start with prefix `WORD NUMBER `" in result.output
    assert "All completions start with prefix ` value `" in result.output
    questions = re.findall(r"\[Recommended\] (.*?) \[Y/n\]", result.output)
    assert questions == [
        "Lowercase all your data in column/key `prompt`",
        "Add a suffix separator ` ->` to all prompts",
        "Remove prefix ` value ` from all completions",
    ]
    written = read_jsonl(tmp_path / "words_prepared.jsonl")
    assert written[3] == {"prompt": "WORD NUMBER 3 ->", "completion": " 3\n"}


def test_answering_no_to_proceed_writes_nothing(tmp_path: Path, run: Run) -> None:
    path = jsonl(tmp_path / "words.jsonl", conditional_rows())
    result = run(path, input="y\ny\ny\nn\n")
    assert "Aborting... did not write the file" in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["words.jsonl"]


def test_clean_jsonl_is_not_rewritten(tmp_path: Path, run: Run) -> None:
    rows = [
        {"prompt": f"Review: {t} film number {i} ->", "completion": f" {t} review {i} END"}
        for i, t in enumerate(["great", "awful", "fine"] * 4)
    ]
    path = jsonl(tmp_path / "clean.jsonl", rows)
    result = run(path)
    assert result.exit_code == 0, result.output
    assert "No remediations found." in result.output
    assert f'tunelab jobs create -t "{path}" -m smollm2-135m-instruct' in result.output
    assert '`stop=[" END"]`' in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == ["clean.jsonl"]


def test_long_examples_lowercase_completions_and_prompt_prefix(tmp_path: Path, run: Run) -> None:
    rows = [
        {
            "prompt": f"Classify the sentiment of this text: item {i} ->",
            "completion": f" ANSWER NUMBER {i}.",
        }
        for i in range(12)
    ]
    rows[4]["prompt"] = "Classify the sentiment of this text: " + "long " * 2500 + " ->"
    result = run(jsonl(tmp_path / "mix.jsonl", rows), "-q")
    out = result.output
    assert (
        "There are 1 examples that are very long (over 10,000 characters). "
        "These are rows on lines: 5" in out
    )
    assert "More than a third of your `completion` column/key is uppercase" in out
    assert "All prompts start with prefix `Classify the sentiment of this text: `" in out
    assert "Fine-tuning doesn't require the instruction" in out
    written = read_jsonl(tmp_path / "mix_prepared.jsonl")
    assert len(written) == 11
    assert written[0] == {
        "prompt": "item 0 ->",
        "completion": " 0.",
    }  # prefix " ANSWER NUMBER " stripped
    assert "Remove prefix ` ANSWER NUMBER ` from all completions" in out


def test_classification_split_is_deterministic(tmp_path: Path, run: Run) -> None:
    rows = [
        {
            "prompt": f"Ticket {i}: my order {'arrived broken' if i % 3 else 'is great'} ->",
            "completion": " complaint" if i % 3 else " praise",
        }
        for i in range(30)
    ]
    path = jsonl(tmp_path / "tickets.jsonl", rows)
    first = run(path, "-q")
    assert first.exit_code == 0, first.output
    assert "it seems like you're trying to fine-tune a model for classification" in first.output
    assert "Would you like to split into training and validation set? [Y/n]: Y" in first.output
    train, valid = (
        tmp_path / "tickets_prepared_train.jsonl",
        tmp_path / "tickets_prepared_valid.jsonl",
    )
    # n_train = max(rows - 1000, int(rows * 0.8))
    assert (len(read_jsonl(train)), len(read_jsonl(valid))) == (24, 6)
    assert f'tunelab jobs create -t "{train}" -v "{valid}" -m smollm2-135m-instruct' in first.output
    assert 'classification with 2 classes (most frequent: " complaint")' in first.output
    assert "stop=" not in first.output  # no stop-sequence check for classification
    assert run(path, "-q").exit_code == 0
    again = tmp_path / "tickets_prepared_train (1).jsonl"
    assert again.exists() and again.read_text() == train.read_text()


def test_output_never_overwrites_the_input(tmp_path: Path, run: Run) -> None:
    path = tmp_path / "data.csv"
    path.write_text("prompt,completion\n" + "".join(f"q{i},a{i}\n" for i in range(12)))
    assert run(path, "-q", "-o", str(tmp_path / "data.jsonl"), "--to-chat").exit_code == 0
    assert "messages" in (tmp_path / "data.jsonl").read_text()
    result = run(path, "-q", "-o", str(path))
    assert result.exit_code == 0, result.output
    assert "prompt" in (tmp_path / "data (1).jsonl").read_text()
    assert path.read_text().startswith("prompt,completion\nq0,a0\n")


def test_gbk_csv_becomes_readable_utf8_chat(tmp_path: Path, run: Run) -> None:
    path = tmp_path / "客服问答.csv"
    rows = [
        (f"第{i}号订单什么时候发货？", f"您好，第{i}号订单将在{i + 1}天内发货。") for i in range(12)
    ]
    path.write_text("prompt,completion\n" + "".join(f"{p},{c}\n" for p, c in rows), encoding="gbk")
    result = run(path, "-q", "--to-chat")
    assert result.exit_code == 0, result.output
    assert "The file is encoded as gb18030; the output will be UTF-8" in result.output
    assert "[Necessary] Convert the prompt/completion pairs to chat messages" in result.output
    out = tmp_path / "客服问答_prepared.jsonl"
    text = out.read_text(encoding="utf-8")
    assert "第0号订单什么时候发货？" in text and "\\u" not in text
    assert next(iter_examples(out)) == {
        "messages": [
            {"role": "user", "content": "第0号订单什么时候发货？"},
            {"role": "assistant", "content": "您好，第0号订单将在1天内发货。"},
        ]
    }
    assert validate_file(out).ok


def test_xlsx_is_converted(tmp_path: Path, run: Run) -> None:
    from openpyxl import Workbook

    book = Workbook()
    book.active.append(["prompt", "completion"])
    for i in range(12):
        book.active.append([f"Translate {i} to Chinese ->", f" 数字 {i}\n"])
    book.save(tmp_path / "nums.xlsx")
    result = run(tmp_path / "nums.xlsx", "-q")
    assert result.exit_code == 0, result.output
    assert "[Necessary] Your format `XLSX` will be converted to `JSONL`" in result.output
    assert read_jsonl(tmp_path / "nums_prepared.jsonl")[1] == {
        "prompt": "Translate 1 to Chinese ->",
        "completion": " 数字 1\n",
    }


def test_alpaca_and_sharegpt_are_converted_to_chat(tmp_path: Path, run: Run) -> None:
    alpaca = [
        {"instruction": "把数字翻译成英文", "input": str(i), "output": f"number {i}"}
        for i in range(6)
    ]
    sharegpt = [
        {
            "conversations": [
                {"from": "human", "value": f"hi {i}"},
                {"from": "gpt", "value": f"hello {i}"},
            ]
        }
        for i in range(6)
    ]
    path = tmp_path / "mixed.json"
    path.write_text(
        json.dumps(alpaca + sharegpt + alpaca[:1], ensure_ascii=False, indent=2), encoding="utf-8"
    )
    result = run(path, "-q")
    assert result.exit_code == 0, result.output
    assert (
        "[Necessary] Convert 7 Alpaca (instruction/input/output) examples to chat messages"
        in result.output
    )
    assert (
        "[Necessary] Convert 6 ShareGPT (conversations) examples to chat messages" in result.output
    )
    assert "12 examples have no system message" not in result.output
    assert "- 13 examples have no system message" in result.output
    assert "[Recommended] Remove 1 duplicate examples [Y/n]: Y" in result.output
    out = tmp_path / "mixed_prepared.jsonl"
    examples = list(iter_examples(out))
    assert len(examples) == 12 and examples[0]["messages"][0] == {
        "role": "user",
        "content": "把数字翻译成英文\n\n0",
    }
    assert validate_file(out).ok


def test_gbk_chat_jsonl_is_streamed_converted_and_deduplicated(tmp_path: Path, run: Run) -> None:
    chats = [
        {
            "messages": [
                {"role": "user", "content": f"第{i}个问题"},
                {"role": "assistant", "content": f"第{i}个回答"},
            ]
        }
        for i in range(8)
    ]
    alpaca = [
        {"instruction": "翻译成英文", "input": f"苹果{i}", "output": f"apple {i}"} for i in range(4)
    ]
    path = tmp_path / "gbk.jsonl"
    path.write_text(
        "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in chats + alpaca + chats[:2]),
        encoding="gbk",
    )
    result = run(path, "-q")
    assert result.exit_code == 0, result.output
    for line in [
        "- Your file contains 14 chat examples",
        "- The file is encoded as gb18030; the output will be UTF-8",
        "- [Necessary] Convert 4 Alpaca (instruction/input/output) examples to chat messages",
        "- 14 examples have no system message",
        "- [Recommended] Remove 2 duplicate examples [Y/n]: Y",
    ]:
        assert line in result.output
    out = tmp_path / "gbk_prepared.jsonl"
    examples = list(iter_examples(out))
    assert len(examples) == 12 and examples[:8] == chats
    assert examples[8]["messages"][0] == {"role": "user", "content": "翻译成英文\n\n苹果0"}
    assert "苹果0" in out.read_text(encoding="utf-8")


@pytest.mark.parametrize(
    ("name", "content", "messages"),
    [
        ("bin.jsonl", b"\x89PNG\r\n\x1a\n\x00\x00\x00" * 40, ["does not look like text"]),
        (
            "cut.json",
            b'[{"prompt": "a",\n "completion": "b"},\n {"prompt": ',
            ["Line 3: the file does not appear to be in valid JSON"],
        ),
        ("empty.jsonl", b"", ["is empty"]),
        (
            "header.csv",
            b"prompt,completion\n",
            ["header row (prompt, completion) but no data rows"],
        ),
        (
            "mixed.jsonl",
            b'{"messages": [{"role": "user", "content": "q"}, '
            b'{"role": "assistant", "content": "a"}]}\n'
            b'{"prompt": "p", "completion": "c"}\n',
            ["Line 2: this example is prompt/completion pairs but line 1 is chat messages"],
        ),
        (
            "types.jsonl",
            b'{"prompt": "p", "completion": "c"}\n{"prompt": "q", "completion": 7}\n',
            ['Line 2, field "completion": "completion" must be a string, got number'],
        ),
        (
            "badjson.jsonl",
            b'{"prompt": "p", "completion": "c"}\n{"prompt": "q", \n',
            ["Line 2: not valid JSON"],
        ),
        (
            "role.jsonl",
            b'{"messages": [{"role": "bot", "content": "q"}, '
            b'{"role": "assistant", "content": "a"}]}\n',
            ["Line 1, message 1, field \"role\": unrecognised role 'bot'"],
        ),
        (
            "nocol.csv",
            b"question,answer\na,b\n",
            ["`prompt` column/key is missing (the file has: question, answer)"],
        ),
        (
            "same.csv",
            b"prompt,completion\nsame,a\nsame,b\nsame,c\n",
            ["ERROR in common_suffix validator: All prompts are identical: `same`"],
        ),
        (
            "samec.csv",
            b"prompt,completion\na,x\nb,x\nc,x\n",
            ["ERROR in common_completion_suffix validator"],
        ),
        (
            "list.jsonl",
            b'{"prompt": "p", "completion": "c"}\n["p", "c"]\n',
            ["Line 2: expected a JSON object, got array"],
        ),
        ("sheet.ods", b"x", ["Supported formats are CSV, TSV, XLSX, TXT, JSON and JSONL"]),
    ],
)
def test_bad_input_gets_a_clear_message_and_exit_1(
    tmp_path: Path, run: Run, name: str, content: bytes, messages: list[str]
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    result = run(path, "-q")
    assert result.exit_code == 1, result.output
    assert isinstance(result.exception, SystemExit)  # no traceback
    for m in messages:
        assert m in result.output
    assert sorted(p.name for p in tmp_path.iterdir()) == [name]


def test_unknown_model_is_refused_before_any_work(tmp_path: Path, run: Run) -> None:
    path = jsonl(tmp_path / "words.jsonl", conditional_rows())
    result = run(path, "-m", "gpt-9")
    assert result.exit_code == 2 and "Analyzing" not in result.output
    assert "Invalid value for '-m' / '--model': The model 'gpt-9' does not exist" in result.output
    result = run(path, "-m", "all-minilm-l6-v2")
    assert result.exit_code == 2 and "is not a chat model" in result.output


def test_huge_single_line_is_refused(tmp_path: Path, run: Run) -> None:
    path = tmp_path / "huge.jsonl"
    path.write_bytes(b'{"prompt": "' + b"x" * (100 * 1024 * 1024) + b'", "completion": "y"}')
    result = run(path, "-q")
    assert result.exit_code == 1 and "Line 1: the line is 105 MB long" in result.output


def test_too_few_examples_fail_like_a_job_would(tmp_path: Path, run: Run) -> None:
    rows = [
        {
            "messages": [
                {"role": "user", "content": f"q{i}"},
                {"role": "assistant", "content": f"a{i}"},
            ]
        }
        for i in range(3)
    ]
    result = run(jsonl(tmp_path / "few.jsonl", rows), "-q")
    assert result.exit_code == 1
    assert "Training file has 3 example(s), but must have at least 10 examples" in result.output


def test_txt_lines_become_open_ended_completions(tmp_path: Path, run: Run) -> None:
    path = tmp_path / "poems.txt"
    lines = ["床前明月光", "疑是地上霜", "举头望明月", "低头思故乡"] * 3
    path.write_text("".join(f"{line}{i}\n" for i, line in enumerate(lines)), encoding="utf-8")
    result = run(path, "-q")
    assert result.exit_code == 0, result.output
    assert "common separator" not in result.output  # open-ended generation: no separator check
    written = read_jsonl(tmp_path / "poems_prepared.jsonl")
    assert written[0] == {"prompt": "", "completion": " 床前明月光0"}


# -- the three doors agree ------------------------------------------------------------


@pytest.mark.parametrize(
    "bad_line", [None, '{"messages": [{"role": "user", "content": "hi"}]}', "{oops"]
)
def test_validator_and_prepare_data_give_the_same_verdict(
    tmp_path: Path, run: Run, bad_line: str | None
) -> None:
    rows = [
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": f"问题{i}"},
                    {"role": "assistant", "content": f"回答{i}"},
                ]
            },
            ensure_ascii=False,
        )
        for i in range(12)
    ]
    if bad_line:
        rows.insert(5, bad_line)
    path = tmp_path / "chat.jsonl"
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")
    report = validate_file(path)
    result = run(path, "-q")
    assert report.ok == (result.exit_code == 0), result.output
    for problem in report.problems:
        assert str(problem) in result.output


# -- real tokenizer: statistics and loss masks ----------------------------------------


@pytest.mark.realmodel
def test_statistics_and_show_masks_with_smollm2(tmp_path: Path, run: Run) -> None:
    rows = [
        {
            "messages": [
                {"role": "system", "content": "你是一个乐于助人的助手。"},
                {"role": "user", "content": f"北京的第{i}个景点是什么？"},
                {"role": "assistant", "content": f"第{i}个景点是故宫，值得一看。"},
                {"role": "user", "content": "谢谢"},
                {"role": "assistant", "content": "不客气！", "weight": 0},
            ]
        }
        for i in range(12)
    ]
    result = run(jsonl(tmp_path / "zh.jsonl", rows), "-q", "--show-masks", "1", stats=True)
    out = result.output
    assert result.exit_code == 0, out
    assert "- Examples: 12" in out
    assert "- Messages per example: min 5, mean 5.0, max 5" in out
    assert re.search(
        r"- Tokens per example \(smollm2-135m-instruct tokenizer\): "
        r"min \d+, mean [\d.]+, p90 \d+, max \d+",
        out,
    )
    assert "- Epochs with n_epochs=auto: 8" in out  # 3 * 12 < 100 -> 100 // 12
    assert "Estimated training time on this machine" in out
    masked = out.split("Example 1 as the model sees it")[1].split("\n", 1)[1]
    trained = re.findall(r"\[\[(.*?)\]\]", masked, flags=re.S)
    # Exactly the assistant turn with weight 1 and its end-of-turn token; never the
    # system/user text, the role headers, or the weight-0 reply.
    assert trained == ["第0个景点是故宫，值得一看。<|im_end|>"]
    assert "北京的第0个景点是什么？" in masked and "不客气！" in masked
