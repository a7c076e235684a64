"""The web dashboard in Debian's headless Chromium against a live server.

The server runs the embedded MiniLM (embeddings, vector-store search) and the tiny
in-code chat model (`tiny-chat`: a real fine-tune that finishes in seconds, real
streaming). Each test drives the pages as a user would: sign in with a key,
upload, read the validation report, start a job and watch its loss curve grow,
compare the fine-tune with its base, search a vector store, switch to Chinese.
Screenshots go to $DASHBOARD_SCREENSHOTS (`make screenshots`: docs/dashboard/).
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import expect

from tests.support import (
    register_models,
    run_server,
    screenshot,
    sign_in,
)
from tests.support import wait_until as wait
from tests.tiny_models import TINY_CHAT, tiny_registry_entry
from tunelab.settings import Settings

pytestmark = [pytest.mark.browser, pytest.mark.slow]

LONG = 240_000  # ms: a fine-tune on a busy 2-core machine (training process start included)


@pytest.fixture(scope="module")
def url(
    tmp_path_factory: pytest.TempPathFactory, model_cache: Path, tiny_chat_dir: Path
) -> Iterator[str]:
    settings = Settings(
        data_dir=tmp_path_factory.mktemp("dashboard") / "data",
        cache_dir=model_cache,
        api_keys="key-alpha:alpha,key-beta:beta",
        worker_poll_seconds=0.2,
    )
    register_models(settings, [tiny_registry_entry(tiny_chat_dir)])
    with run_server(settings) as base:
        yield base


def chat_file(n: int) -> str:
    return "".join(
        json.dumps(
            {
                "messages": [
                    {"role": "user", "content": f"Question number {i}?"},
                    {"role": "assistant", "content": f"Ahoy! Answer {i % 3}."},
                ]
            }
        )
        + "\n"
        for i in range(n)
    )


def drop_file(page: Any, selector: str, name: str, text: str) -> None:
    """A real drag-and-drop: dragover then drop events carrying a File."""
    page.eval_on_selector(
        selector,
        """(zone, [name, text]) => {
            const data = new DataTransfer();
            data.items.add(new File([text], name, { type: "application/octet-stream" }));
            for (const type of ["dragover", "drop"]) {
                const init = { dataTransfer: data, bubbles: true, cancelable: true };
                zone.dispatchEvent(new DragEvent(type, init));
            }
        }""",
        [name, text],
    )


def test_fine_tune_from_upload_to_the_playground(page: Any, url: str, tmp_path: Path) -> None:
    # A wrong key is refused on the sign-in page; the right one opens its project.
    page.goto(url + "/dashboard/")
    page.get_by_test_id("api-key").fill("not-a-key")
    page.get_by_test_id("signin-submit").click()
    expect(page.get_by_test_id("error")).to_contain_text("Incorrect API key")
    sign_in(page, url, "key-alpha")
    expect(page.get_by_test_id("project")).to_contain_text("alpha")

    # Upload: one file dropped on the zone, one chosen; both show their progress.
    bad = chat_file(12).splitlines()
    bad[3] = json.dumps({"messages": [{"role": "user", "content": "no answer"}]})
    bad[6] = "{not json"
    good = tmp_path / "pirate.jsonl"
    good.write_text(chat_file(60))
    page.get_by_test_id("nav-files").click()
    drop_file(page, "[data-testid=dropzone]", "broken.jsonl", "\n".join(bad) + "\n")
    page.get_by_test_id("dropzone-input").set_input_files(str(good))
    expect(page.locator("[data-testid=upload][data-done=true]")).to_have_count(2)
    expect(page.get_by_test_id("file-row")).to_have_count(2)
    screenshot(page, "files")

    # The broken file's report names each bad line.
    page.get_by_role("link", name="broken.jsonl").click()
    page.get_by_test_id("report-model").select_option(TINY_CHAT)
    expect(page.get_by_test_id("verdict")).to_have_attribute("data-ok", "false", timeout=LONG)
    lines = page.get_by_test_id("problem").evaluate_all("rows => rows.map(r => r.dataset.line)")
    assert lines == ["4", "7"]

    # The good one: statistics, an estimate, and the trained tokens highlighted.
    page.get_by_test_id("nav-files").click()
    page.get_by_role("link", name="pirate.jsonl").click()
    page.get_by_test_id("report-model").select_option(TINY_CHAT)
    expect(page.get_by_test_id("verdict")).to_have_attribute("data-ok", "true", timeout=LONG)
    expect(page.get_by_test_id("stats")).to_contain_text("60")
    expect(page.get_by_test_id("estimate")).not_to_be_empty()
    first = page.get_by_test_id("example").first
    marked = first.locator("mark.trained").all_inner_texts()
    assert marked and marked[0].startswith("Ahoy! Answer 0.")
    assert "Question number 0?" in first.inner_text() and not any("Question" in m for m in marked)
    screenshot(page, "file-report")

    # Create the job from the file's page, with the validator's findings shown first.
    page.get_by_test_id("finetune-file").click()
    page.get_by_test_id("job-model").select_option(TINY_CHAT)
    for name, value in (("n_epochs", "3"), ("batch_size", "1"), ("learning_rate_multiplier", "10")):
        page.get_by_test_id(f"hp-{name}").fill(value)
    page.get_by_test_id("hp-seed").fill("7")
    findings = page.get_by_test_id("findings")
    expect(findings.get_by_test_id("verdict")).to_have_attribute("data-ok", "true", timeout=LONG)
    # 60 examples train 3 epochs with n_epochs=auto; another choice gets its own estimate.
    expect(findings.get_by_test_id("estimate-chosen")).to_have_count(0)
    page.get_by_test_id("hp-n_epochs").fill("6")
    expect(findings.get_by_test_id("estimate-chosen")).to_be_visible()
    page.get_by_test_id("hp-n_epochs").fill("3")
    screenshot(page, "new-job")
    page.get_by_test_id("create-job").click()
    job = page.get_by_test_id("job")
    job.wait_for()
    job_url = page.url

    # The loss chart gains points while the job is running.
    loss = page.get_by_test_id("chart-loss")

    def points() -> int:
        return int(loss.get_attribute("data-points") or 0) if loss.count() else 0

    def running_with_points() -> int:
        n = points()
        return n if job.get_attribute("data-status") == "running" and n > 0 else 0

    # Seen while running, then more points without a reload: the page follows training.
    seen = wait(running_with_points, timeout=LONG / 1000, every=0.2)
    assert seen < 180
    wait(lambda: points() > seen, timeout=60, every=0.2)
    screenshot(page, "job-running")
    expect(job).to_have_attribute("data-status", "succeeded", timeout=LONG)
    expect(loss).to_have_attribute("data-points", "180")
    expect(page.get_by_test_id("chart-lr")).to_have_attribute("data-points", "180")
    expect(page.get_by_test_id("checkpoint-row")).to_have_count(3)
    expect(page.get_by_test_id("event-log")).to_contain_text("successfully completed")
    model = page.get_by_test_id("fine-tuned-model").inner_text()
    screenshot(page, "job")

    # The finished model next to its base, on the same prompt, streamed.
    page.get_by_test_id("open-playground").click()
    panes = page.get_by_test_id("pane")
    expect(panes).to_have_count(2)
    assert [p.get_attribute("data-model") for p in panes.all()] == [model, TINY_CHAT]
    page.get_by_test_id("param-temperature").fill("0")
    page.get_by_test_id("param-max_tokens").fill("12")
    page.get_by_test_id("prompt").fill("Question number 4?")
    page.get_by_test_id("send").click()
    expect(page.locator("[data-testid=pane][data-state=done]")).to_have_count(2, timeout=LONG)
    tuned, base = (p.get_by_test_id("answer").inner_text() for p in panes.all())
    assert tuned.startswith("Ahoy! Answer"), tuned  # it learned the persona
    assert "Ahoy" not in base
    screenshot(page, "playground")

    # The queue shows it finished; a checkpoint opens in the playground too.
    page.get_by_test_id("nav-jobs").click()
    row = page.get_by_test_id("job-row").first
    expect(row.locator("[data-status]")).to_have_attribute("data-status", "succeeded")
    screenshot(page, "jobs")
    page.goto(job_url)
    page.get_by_test_id("try-checkpoint").last.click()
    expect(page.get_by_test_id("pane").first).to_have_attribute(
        "data-model", re.compile(r"ckpt-step-60$")
    )

    # The same job page in Chinese: labels, legends and axis names.
    page.goto(job_url)
    page.get_by_test_id("lang-switch").click()
    expect(page.get_by_test_id("chart-loss")).to_contain_text("损失")
    expect(page.get_by_test_id("checkpoints-section")).to_contain_text("试用此检查点")
    screenshot(page, "zh-job")


DOCS = {
    "password.txt": "To reset your password, open Settings, choose Account and click Reset "
    "password. A reset link is emailed to you within five minutes.",
    "shipping.txt": "Orders ship within two business days. Delivery takes three to five days "
    "inside the country; international delivery takes up to three weeks.",
    "battery.txt": "The battery lasts about ten hours. Charge it with the USB-C cable; a full "
    "charge takes two hours.",
}


def test_vector_store_search_puts_the_right_passage_first(
    page: Any, url: str, tmp_path: Path
) -> None:
    sign_in(page, url, "key-alpha")
    page.get_by_test_id("nav-stores").click()
    page.get_by_test_id("store-name").fill("Support manual")
    page.get_by_test_id("create-store").click()
    page.get_by_test_id("store").wait_for()
    paths = []
    for name, text in DOCS.items():
        (tmp_path / name).write_text(text)
        paths.append(str(tmp_path / name))
    page.get_by_test_id("store-dropzone-input").set_input_files(paths)
    expect(page.locator("[data-testid=store-file][data-status=completed]")).to_have_count(
        3, timeout=LONG
    )
    ids = {
        row.locator("td").nth(0).inner_text(): row.locator("code").inner_text()
        for row in page.get_by_test_id("store-file").all()
    }
    assert set(ids) == set(DOCS)

    page.get_by_test_id("search-query").fill("How do I reset my password?")
    page.get_by_test_id("search").click()
    hits = page.get_by_test_id("hit")
    expect(hits.first).to_be_visible(timeout=LONG)  # the first search loads the store's index
    assert hits.first.get_attribute("data-file") == ids["password.txt"]
    marked = {m.lower() for m in hits.first.locator("mark.hit").all_inner_texts()}
    assert {"reset", "password"} <= marked
    assert "how" not in marked  # common words are not marked
    screenshot(page, "vector-store")

    page.get_by_test_id("ask-model").select_option(TINY_CHAT)
    page.get_by_test_id("ask-question").fill("How do I reset my password?")
    page.get_by_test_id("ask").click()
    answer = page.get_by_test_id("answer")
    expect(answer).to_be_visible(timeout=LONG)
    answer.locator("summary").click()  # the passages the answer was grounded on
    expect(answer.locator("ol.hits li").first).to_contain_text("password.txt")


def test_embeddings_heatmap_and_closest_text(page: Any, url: str) -> None:
    sign_in(page, url, "key-alpha")
    page.get_by_test_id("nav-embeddings").click()
    page.get_by_test_id("emb-compare").click()
    heatmap = page.get_by_test_id("heatmap")
    expect(heatmap).to_have_attribute("data-size", "4", timeout=LONG)  # the model may load first
    expect(heatmap.locator("canvas").first).to_be_visible()
    page.get_by_test_id("emb-query").fill("I can't remember my password")
    page.get_by_test_id("emb-rank").click()
    ranked = page.get_by_test_id("emb-ranked")
    expect(ranked).to_have_count(4)
    assert "password" in ranked.first.inner_text()
    screenshot(page, "embeddings")


CJK_FONT = re.compile(r"CJK|Han|Hei|PingFang|YaHei|WenQuanYi|Fallback", re.I)


def test_switching_to_chinese(page: Any, url: str) -> None:
    sign_in(page, url, "key-alpha")
    untranslated = page.evaluate("import('./static/lib/i18n.js').then(m => m.untranslated())")
    assert untranslated == []
    page.get_by_test_id("lang-switch").click()
    expect(page.locator("html")).to_have_attribute("lang", "zh-CN")
    nav = page.get_by_test_id("nav-jobs")
    expect(nav).to_have_text("训练任务")

    # The Chinese is drawn with a font that has the glyphs, not as empty boxes.
    cdp = page.context.new_cdp_session(page)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    root = cdp.send("DOM.getDocument")["root"]["nodeId"]
    node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": "[data-testid=nav-jobs]"})
    fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node["nodeId"]})["fonts"]
    assert any(CJK_FONT.search(f["familyName"]) and f["glyphCount"] >= 4 for f in fonts), fonts

    for section, label in (
        ("jobs", "微调任务"),
        ("files", "上传"),
        ("playground", "对话测试"),
        ("stores", "向量库"),
        ("evals", "评测"),
        ("batches", "批处理"),
    ):
        page.get_by_test_id(f"nav-{section}").click()
        expect(page.locator("main")).to_contain_text(label)
        if section in ("files", "playground"):
            screenshot(page, f"zh-{section}")
    page.get_by_test_id("nav-embeddings").click()
    page.get_by_test_id("emb-compare").click()
    expect(page.get_by_test_id("heatmap")).to_have_attribute("data-size", "4", timeout=LONG)
    screenshot(page, "zh-embeddings")

    # The choice is kept across a reload, and switching back restores English.
    page.reload()
    expect(nav).to_have_text("训练任务")
    page.get_by_test_id("lang-switch").click()
    expect(nav).to_have_text("Jobs")
