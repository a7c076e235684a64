"""The validator at the upload door, through the official openai SDK."""

from __future__ import annotations

import json

import openai
import pytest

from tunelab.data.validation import validate_file

pytestmark = pytest.mark.api


def _lines(n: int) -> list[str]:
    return [
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": f"你好 {i}"},
                    {"role": "assistant", "content": f"您好 {i}"},
                ]
            },
            ensure_ascii=False,
        )
        for i in range(n)
    ]


def test_malformed_fine_tune_file_is_marked_error_naming_the_line(
    client: openai.OpenAI, tmp_path
) -> None:
    lines = _lines(12)
    lines[6] = '{"messages": [{"role": "user", "content": "hi"}, {"role": "bot", "content": "x"}]}'
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    uploaded = client.files.create(file=path.open("rb"), purpose="fine-tune")
    assert uploaded.status == "error"
    assert uploaded.status_details == validate_file(path).summary()
    assert uploaded.status_details.startswith(
        "Line 7, message 2, field \"role\": unrecognised role 'bot'"
    )
    assert client.files.retrieve(uploaded.id).status == "error"


def test_well_formed_file_is_processed(client: openai.OpenAI) -> None:
    data = ("\n".join(_lines(12)) + "\n").encode("utf-8")
    uploaded = client.files.create(
        file=("train.jsonl", data, "application/jsonl"), purpose="fine-tune"
    )
    assert (uploaded.status, uploaded.status_details) == ("processed", None)


def test_csv_is_refused_at_upload_with_a_pointer_to_prepare_data(client: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError, match="tunelab prepare-data"):
        client.files.create(
            file=("train.csv", b"prompt,completion\na,b\n", "text/csv"), purpose="fine-tune"
        )
