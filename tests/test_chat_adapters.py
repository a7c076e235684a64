"""LoRA fine-tunes served hot on the shared tiny base, through the catalog.

The adapters are made here with peft (random, non-zero LoRA weights, so the
output must change); a fine-tuning job would register its own the same way.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest

from tests.support import register_models, run_server, sdk
from tests.tiny_models import TINY_CHAT, tiny_registry_entry
from tunelab.api.app import create_app
from tunelab.settings import Settings

pytestmark = pytest.mark.api

HI = [{"role": "user", "content": "Say something."}]
FT_A = "ft:tiny-chat:proj-a:persona:ABC123"
FT_B = "ft:tiny-chat:proj-a:persona:ABC123:ckpt-step-2"


def make_adapter(base_dir: Path, target: Path, seed: int) -> Path:
    import torch
    from peft import LoraConfig, get_peft_model
    from transformers import AutoModelForCausalLM

    torch.manual_seed(seed)
    model = AutoModelForCausalLM.from_pretrained(str(base_dir))
    config = LoraConfig(
        r=8, lora_alpha=32, target_modules=["q_proj", "v_proj", "up_proj"], init_lora_weights=False
    )
    get_peft_model(model, config).save_pretrained(str(target))
    return target


@pytest.fixture
def ft_settings(settings: Settings, tiny_chat_dir: Path) -> Settings:
    settings = settings.model_copy(
        update={"api_keys": "key-a:proj-a,key-b:proj-b", "adapter_cache_size": 1}
    )
    register_models(settings, [tiny_registry_entry(tiny_chat_dir)])
    return settings


def greedy(client: openai.OpenAI, model: str) -> str:
    r = client.chat.completions.create(model=model, messages=HI, max_tokens=10, temperature=0)
    return r.choices[0].message.content or ""


def test_adapters_change_output_survive_restart_and_stay_in_their_project(
    ft_settings: Settings, tiny_chat_dir: Path
) -> None:
    models = ft_settings.models_dir
    app = create_app(ft_settings)
    catalog = app.runtime.catalog
    for model_id, seed in [(FT_A, 1), (FT_B, 2)]:
        path = make_adapter(tiny_chat_dir, models / model_id.replace(":", "_"), seed)
        catalog.register_fine_tuned(
            project="proj-a", model_id=model_id, base_model=TINY_CHAT, path=path, kind="lora"
        )

    with run_server(app) as url:
        a, b = sdk(url, "key-a"), sdk(url, "key-b")
        base = greedy(a, TINY_CHAT)
        ft_a, ft_b = greedy(a, FT_A), greedy(a, FT_B)
        assert len({base, ft_a, ft_b}) == 3  # each adapter changes the output
        assert greedy(a, TINY_CHAT) == base  # the shared base is untouched
        # adapter_cache_size=1: A was evicted for B and is re-attached, same answer
        assert greedy(a, FT_A) == ft_a
        # Base alone runs with the adapter layers off; the next adapter turns them on.
        assert greedy(a, TINY_CHAT) == base
        assert greedy(a, FT_A) == ft_a

        # Base and both adapters in flight at once: rows of one batch, each its own answer.
        with ThreadPoolExecutor(6) as pool:
            outs = list(pool.map(lambda m: greedy(a, m), [TINY_CHAT, FT_A, FT_B] * 2))
        assert outs == [base, ft_a, ft_b] * 2

        with pytest.raises(openai.NotFoundError) as e:  # another project's fine-tune does not exist
            b.chat.completions.create(model=FT_A, messages=HI, max_tokens=3)
        assert e.value.code == "model_not_found"
        with pytest.raises(openai.NotFoundError):
            b.completions.create(model=FT_A, prompt="hi", max_tokens=3)

    # A new server on the same data dir: the catalog is in the database.
    with run_server(ft_settings) as url:
        a = sdk(url, "key-a")
        assert greedy(a, FT_A) == ft_a
        a.models.delete(FT_B)
        with pytest.raises(openai.NotFoundError):
            greedy(a, FT_B)


def test_full_fine_tune_is_served_as_its_own_model(
    ft_settings: Settings, tiny_chat_dir: Path
) -> None:
    import torch
    from transformers import AutoModelForCausalLM

    full_dir = ft_settings.models_dir / "full-1"
    model = AutoModelForCausalLM.from_pretrained(str(tiny_chat_dir))
    torch.manual_seed(3)
    with torch.no_grad():
        for p in model.parameters():
            p.add_(torch.randn_like(p) * 0.05)
    model.save_pretrained(str(full_dir))  # no tokenizer saved: the base's is used
    app = create_app(ft_settings)
    app.runtime.catalog.register_fine_tuned(
        project="proj-a",
        model_id="ft:tiny-chat:proj-a:full:XYZ",
        base_model=TINY_CHAT,
        path=full_dir,
        kind="full",
    )
    with run_server(app) as url:
        a = sdk(url, "key-a")
        base, full = greedy(a, TINY_CHAT), greedy(a, "ft:tiny-chat:proj-a:full:XYZ")
        assert full != base and greedy(a, TINY_CHAT) == base
