"""Dashboard list pages with 1,000 jobs and 10,000 files vs with 10 of each.

Usage: python benchmarks/dashboard.py [--jobs N] [--files N] [--repeat R]

Starts tunelab on a temp data dir, writes the rows of two projects straight into
its database (a small one: 10 jobs, 10 files; a big one: N jobs, M files), then
in Debian's headless Chromium (`make browser-deps`) times, per project:

  jobs page     navigation until the first page of the queue is drawn
  files page    navigation until the first page of files is drawn
  next page     a click on "Next" until the second page of files is drawn

and prints the medians and the big/small ratio (1.0 = the size of the project
does not matter). For contrast it also times what a page without paging would have
to fetch: GET /v1/files?limit=10000 (the OpenAI default for files) against the
dashboard's limit=50.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from tests.support import chromium, run_server, seed_lists  # noqa: E402
from tunelab.runtime import build_runtime  # noqa: E402
from tunelab.settings import Settings  # noqa: E402


def timed(action: Callable[[], object], done: Callable[[], object]) -> float:
    start = time.perf_counter()
    action()
    done()
    return time.perf_counter() - start


KEYS = {"small": "small-key", "big": "big-key"}


def measure(browser: object, url: str, key: str, repeat: int) -> dict[str, float]:
    """Median seconds of each page action for the project of `key`."""
    page = browser.new_page()  # type: ignore[attr-defined]
    page.goto(url + "/dashboard/")
    page.get_by_test_id("api-key").fill(key)
    page.get_by_test_id("signin-submit").click()
    page.get_by_test_id("project").wait_for()
    times: dict[str, list[float]] = {"jobs page": [], "files page": [], "next page": []}
    for _ in range(repeat):
        times["jobs page"].append(
            timed(
                lambda: page.goto(url + "/dashboard/jobs"),
                lambda: page.get_by_test_id("job-row").first.wait_for(),
            )
        )
        times["files page"].append(
            timed(
                lambda: page.goto(url + "/dashboard/files"),
                lambda: page.get_by_test_id("file-row").first.wait_for(),
            )
        )
        if page.get_by_test_id("next").is_enabled():
            times["next page"].append(
                timed(
                    lambda: page.get_by_test_id("next").click(),
                    lambda: page.get_by_test_id("page-number").filter(has_text="2").wait_for(),
                )
            )
    page.close()
    return {k: statistics.median(v) for k, v in times.items() if v}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--files", type=int, default=10_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(data_dir=Path(tmp), api_keys="small-key:small,big-key:big")
        rt = build_runtime(settings, embedded_worker=False)
        seed_lists(rt, "small", n_jobs=10, n_files=10)
        seed_lists(rt, "big", n_jobs=args.jobs, n_files=args.files)
        with run_server(rt) as url, chromium() as browser:
            results = {p: measure(browser, url, key, args.repeat) for p, key in KEYS.items()}
            headers = {"Authorization": "Bearer big-key"}

            def fetch(limit: int) -> float:
                return statistics.median(
                    timed(
                        lambda: httpx.get(f"{url}/v1/files?limit={limit}", headers=headers),
                        lambda: None,
                    )
                    for _ in range(args.repeat)
                )

            paged, unpaged = fetch(50), fetch(10_000)

    print(f"dashboard pages, median of {args.repeat} (ms)")
    print(
        f"{'':14}{'10 jobs/10 files':>18}{f'{args.jobs} jobs/{args.files} files':>26}{'ratio':>8}"
    )
    for name in ("jobs page", "files page"):
        small, big = results["small"][name], results["big"][name]
        print(f"{name:14}{small * 1000:18.0f}{big * 1000:26.0f}{big / small:8.2f}")
    print(f"{'next page':14}{'':18}{results['big']['next page'] * 1000:26.0f}")
    print(
        f"GET /v1/files with {args.files} files: limit=50 {paged * 1000:.0f} ms, "
        f"limit=10000 (no paging) {unpaged * 1000:.0f} ms ({unpaged / paged:.0f}x)"
    )


if __name__ == "__main__":
    main()
