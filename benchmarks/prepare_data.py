"""Validating a 1,000,000-line fine-tuning JSONL: tunelab's streaming validator vs
the legacy approach.

Usage: python benchmarks/prepare_data.py [--lines N]

Generates a chat JSONL (English and Chinese turns) in a temp dir, then runs each
approach in its own fresh process so peak RSS is that approach's alone:

  read lines     read the file line by line, nothing else (the I/O floor)
  json.loads     parse every line, no checks (the parsing floor)
  validate_file  tunelab's validator: encoding detection, parse, every chat check
  pandas         the legacy prepare_data way: pandas.read_json(lines=True) of the whole file

and prints a table with throughput, peak RSS and ratios against validate_file.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Each child prints {"seconds": s, "rss_mb": peak RSS, "n": lines or examples seen}.
CHILD = {
    "read lines": """
n = 0
with open(path, "rb") as fh:
    for _ in fh:
        n += 1
""",
    "json.loads": """
import json
n = 0
with open(path, "rb") as fh:
    for line in fh:
        json.loads(line)
        n += 1
""",
    "validate_file": """
from tunelab.data.validation import validate_file
report = validate_file(path)
assert report.ok, report.summary()
n = report.n_examples
""",
    "pandas (legacy)": """
import pandas as pd
df = pd.read_json(path, lines=True, dtype=False)
n = len(df)
""",
}

RUNNER = """
import json, resource, sys, time
sys.path.insert(0, {root!r})
path = {path!r}
t0 = time.perf_counter()
{body}
seconds = time.perf_counter() - t0
rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps({{"seconds": seconds, "rss_mb": rss_mb, "n": n}}))
"""


def generate(path: Path, n_lines: int) -> None:
    with open(path, "w", encoding="utf-8") as fh:
        for i in range(n_lines):
            if i % 2:
                user, assistant = (
                    f"How do I reset password number {i}?",
                    f"Open Settings, then Account, step {i}.",
                )
            else:
                user, assistant = f"第{i}号订单什么时候发货？", f"您好，第{i}号订单将在两天内发货。"
            ex = {
                "messages": [
                    {"role": "system", "content": "You are a support agent."},
                    {"role": "user", "content": user},
                    {"role": "assistant", "content": assistant},
                ]
            }
            fh.write(json.dumps(ex, ensure_ascii=False) + "\n")


def run_child(name: str, path: Path) -> dict[str, float]:
    code = RUNNER.format(root=str(ROOT), path=str(path), body=CHILD[name])
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=1_000_000)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "train.jsonl"
        t0 = time.perf_counter()
        generate(path, args.lines)
        size_mb = path.stat().st_size / 1e6
        print(
            f"Generated {args.lines:,} lines, {size_mb:.0f} MB "
            f"in {time.perf_counter() - t0:.1f} s\n"
        )
        results = {name: run_child(name, path) for name in CHILD}
    ours = results["validate_file"]
    header = (
        f"{'approach':<16} {'seconds':>8} {'MB/s':>7} {'lines/s':>10} {'peak RSS MB':>12} "
        f"{'time vs ours':>13} {'RSS vs ours':>12}"
    )
    print(header)
    print("-" * len(header))
    for name, r in results.items():
        print(
            f"{name:<16} {r['seconds']:>8.2f} {size_mb / r['seconds']:>7.1f} "
            f"{args.lines / r['seconds']:>10,.0f} {r['rss_mb']:>12.0f} "
            f"{r['seconds'] / ours['seconds']:>12.2f}x {r['rss_mb'] / ours['rss_mb']:>11.2f}x"
        )
    print(
        f"\nvalidate_file runs at {results['json.loads']['seconds'] / ours['seconds']:.0%} "
        "of the bare json.loads speed and "
        f"{results['read lines']['seconds'] / ours['seconds']:.1%} of the line-read "
        "speed (the machine's I/O limit for this file), in bounded memory."
    )


if __name__ == "__main__":
    main()
