"""Evaluation corpora that nobody on this project wrote, built from Debian packages.

    man-en     English man pages (sections 1, 5, 8) of 18 everyday packages
    python-doc the Python 3.11 library reference (HTML pages of python3.11-doc)
    man-zh     Chinese man pages (manpages-zh, sections 1, 5, 8) that are mostly Chinese

The packages are fetched with `apt-get download` (no installation; run `apt-get
update` once first) and unpacked with `dpkg-deb -x` under the cache directory; man
pages are rendered to text with man-db (`man --nj --nh -l`, 100 columns, `col -bx`).
Page size limits keep a whole benchmark run within reach of a 2-core machine; the
page lists are deterministic for a given Debian release (the package versions used
are printed). Questions live in benchmarks/questions/<corpus>.jsonl (reported) and
benchmarks/questions/dev/<corpus>.jsonl (used to choose weights and chunk sizes):
one JSON object per line, {"question": ..., "page": <document name>}. `man-zh-xl` has
development questions of its own (English, on pages of the same 100-page subset that
its held-out questions do not ask about).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

QUESTIONS = Path(__file__).resolve().parent / "questions"
MAN_EN_PACKAGES = [
    "coreutils", "findutils", "grep", "sed", "tar", "gzip", "diffutils", "less", "procps",
    "cron", "openssh-client", "rsync", "wget", "iputils-ping", "passwd", "login", "mount",
    "e2fsprogs",
]  # fmt: skip
PACKAGES = [*MAN_EN_PACKAGES, "manpages-zh", "python3.11-doc"]
MAX_PAGE_BYTES = 50_000
HTML_BYTES = (14_000, 45_000)  # python-doc pages: skip stubs and the longest references
RENDER_TIMEOUT_S = 60  # one manpages-zh page sends troff into a loop with --nj


@dataclass(frozen=True)
class Document:
    name: str  # what questions refer to: "ls.1", "json"
    filename: str  # what is uploaded: "ls.1.txt", "json.html"
    data: bytes


@dataclass(frozen=True)
class Question:
    question: str
    page: str


@dataclass(frozen=True)
class Corpus:
    name: str
    documents: list[Document]
    language: str

    def questions(self, split: str = "report") -> list[Question]:
        """The reported questions, or the development set with split="dev"."""
        path = QUESTIONS / (f"dev/{self.name}.jsonl" if split == "dev" else f"{self.name}.jsonl")
        rows = [json.loads(x) for x in path.read_text(encoding="utf-8").splitlines() if x]
        names = {d.name for d in self.documents}
        return [Question(r["question"], r["page"]) for r in rows if r["page"] in names]

    def smaller(self, pages: int, split: str = "report") -> Corpus:
        """The first `pages` pages, those that answer questions first (for quick runs).

        Pages that answer any question of the corpus (development, reported, and the
        cross-lingual set of the same pages) come first, so every split (and man-zh and
        man-zh-xl) gets the same pages and shares one set of cached vectors; `split` only
        says which questions must all be answerable.
        """
        base = self.name.removesuffix("-xl")
        files = [QUESTIONS / "dev" / f"{base}.jsonl", *sorted(QUESTIONS.glob(f"{base}*.jsonl"))]
        rows = [
            json.loads(x) for f in files for x in f.read_text(encoding="utf-8").splitlines() if x
        ]
        answers = {r["page"] for r in rows}
        if len(answers) > pages:
            answers = {q.page for q in self.questions(split)}
        ranked = sorted(self.documents, key=lambda d: d.name not in answers)
        return Corpus(self.name, ranked[:pages], self.language)


def fetch(cache: Path) -> dict[str, str]:
    """Download and unpack the packages once; returns {package: version}."""
    debs, root = cache / "debs", cache / "root"
    debs.mkdir(parents=True, exist_ok=True)
    missing = [p for p in PACKAGES if not list(debs.glob(f"{p}_*.deb"))]
    if missing:
        done = subprocess.run(
            ["apt-get", "download", *missing], cwd=debs, capture_output=True, text=True
        )
        if done.returncode:
            raise SystemExit(
                f"apt-get download failed (run `apt-get update` first?):\n{done.stderr}"
            )
    versions = {}
    for p in PACKAGES:
        deb = sorted(debs.glob(f"{p}_*.deb"))[-1]
        versions[p] = deb.name.split("_")[1].replace("%3a", ":")
        stamp = root / f".{deb.name}"
        if not stamp.exists():
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
            stamp.touch()
    return versions


def _members(cache: Path, package: str, pattern: str) -> list[str]:
    deb = sorted((cache / "debs").glob(f"{package}_*.deb"))[-1]
    listing = subprocess.run(
        ["dpkg-deb", "-c", str(deb)], capture_output=True, text=True, check=True
    ).stdout
    paths = [line.split()[5] for line in listing.splitlines() if "->" not in line]
    return sorted(p.removeprefix("./") for p in paths if re.search(pattern, p))


def render_man(path: Path, out: Path) -> str | None:
    """The page as plain text (cached next to the cache's unpacked files)."""
    if out.exists():
        return out.read_text(encoding="utf-8") or None
    env = {**os.environ, "MANWIDTH": "100", "LANG": "C.UTF-8", "MAN_DISABLE_SECCOMP": "1"}
    try:
        page = subprocess.run(
            ["man", "--nj", "--nh", "-l", str(path)],
            capture_output=True, env=env, timeout=RENDER_TIMEOUT_S,
        ).stdout  # fmt: skip
        text = subprocess.run(["col", "-bx"], input=page, capture_output=True).stdout.decode()
    except subprocess.TimeoutExpired:
        text = ""
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text, encoding="utf-8")
    return text or None


def _man_corpus(cache: Path, packages: list[str], pattern: str, lang: str) -> list[Document]:
    docs = []
    for package in packages:
        for member in _members(cache, package, pattern):
            name = Path(member).name.removesuffix(".gz")
            text = render_man(cache / "root" / member, cache / "text" / lang / f"{name}.txt")
            if not text or not 1000 < len(text.encode()) <= MAX_PAGE_BYTES:
                continue
            if lang == "zh":
                cjk = len(re.findall(r"[\u4e00-\u9fff]", text))
                if cjk <= len(re.findall(r"[A-Za-z]", text)):
                    continue  # mostly untranslated
            docs.append(Document(name, f"{name}.txt", text.encode()))
    return sorted({d.name: d for d in docs}.values(), key=lambda d: d.name)


def build(cache: Path) -> tuple[list[Corpus], dict[str, str]]:
    """All corpora (man-zh-xl: man-zh's pages with English questions) and package versions."""
    versions = fetch(cache)
    man_en = _man_corpus(cache, MAN_EN_PACKAGES, r"usr/share/man/man[158]/.+\.gz$", "en")
    man_zh = _man_corpus(cache, ["manpages-zh"], r"usr/share/man/zh_CN/man[158]/.+\.gz$", "zh")
    html = cache / "root" / "usr/share/doc/python3.11/html/library"
    python_doc = [
        Document(p.stem, p.name, p.read_bytes())
        for p in sorted(html.glob("*.html"))
        if HTML_BYTES[0] < p.stat().st_size <= HTML_BYTES[1]
    ]
    corpora = [
        Corpus("man-en", man_en, "en"),
        Corpus("python-doc", python_doc, "en"),
        Corpus("man-zh", man_zh, "zh"),
        Corpus("man-zh-xl", man_zh, "en->zh"),
    ]
    return corpora, versions
