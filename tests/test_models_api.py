"""Models API: base models, fine-tunes per project, deletion rules."""

from __future__ import annotations

import openai
import pytest

from tests.support import run_server, sdk

pytestmark = pytest.mark.api


def test_list_and_retrieve(client: openai.OpenAI) -> None:
    ids = {m.id for m in client.models.list()}
    assert {"smollm2-135m-instruct", "all-minilm-l6-v2"} <= ids
    m = client.models.retrieve("smollm2-135m-instruct")
    assert m.object == "model" and m.owned_by
    with pytest.raises(openai.NotFoundError) as e:
        client.models.retrieve("gpt-17")
    assert e.value.body["code"] == "model_not_found" and e.value.body["param"] == "model"


def test_base_model_cannot_be_deleted(client: openai.OpenAI) -> None:
    with pytest.raises(openai.PermissionDeniedError) as e:
        client.models.delete("smollm2-135m-instruct")
    assert "base model" in e.value.message


def test_fine_tunes_belong_to_their_project(settings, tmp_path) -> None:
    settings.api_keys = "ka:alpha,kb:beta"
    from tunelab.api.app import create_app

    app = create_app(settings)
    adapter = settings.models_dir / "ft-x"
    adapter.mkdir(parents=True)
    name = "ft:smollm2-135m-instruct:alpha:demo:abcd1234"
    app.runtime.catalog.register_fine_tuned(
        project="alpha",
        model_id=name,
        base_model="smollm2-135m-instruct",
        path=adapter,
        kind="lora",
    )
    with run_server(app) as url:
        alpha, beta = sdk(url, "ka"), sdk(url, "kb")
        assert name in {m.id for m in alpha.models.list()}
        assert name not in {m.id for m in beta.models.list()}
        assert alpha.models.retrieve(name).owned_by == "alpha"  # colons in the path work
        with pytest.raises(openai.NotFoundError):
            beta.models.retrieve(name)
        with pytest.raises(openai.NotFoundError):
            beta.models.delete(name)
        assert alpha.models.delete(name).deleted
        assert not adapter.exists()
        with pytest.raises(openai.NotFoundError):
            alpha.models.retrieve(name)
