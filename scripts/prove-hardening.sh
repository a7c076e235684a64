#!/usr/bin/env bash
# Re-runs the proof of docs/hardening.md: the hardening tests of this checkout, once
# against the code before the hardening merge (253a1ac^1) and once against this
# checkout, each in its own report. Not part of CI (several minutes of a busy server).
#
#   scripts/prove-hardening.sh [old-rev] [pytest selection...]
#
# The old code gets this checkout's tests/test_hardening.py and tests/support.py, and
# two adaptations, nothing else: tunelab/limits.py (which did not exist then) is copied
# in so the tests can import its constants (no old module reads it), and the test
# clients get a 60 s timeout so a request the old server never answers fails instead
# of hanging. Reports go to .tunelab/hardening-proof/{old,new}.txt.
set -uo pipefail
ROOT=$(git rev-parse --show-toplevel)
REV=${1:-253a1ac^1}
shift || true
SELECT=("${@:-tests/test_hardening.py}")
PY=$ROOT/.venv/bin/python
OUT=$ROOT/.tunelab/hardening-proof
OLD=$(mktemp -d)/old
mkdir -p "$OUT" "$ROOT/.tunelab/test-cache"

git -C "$ROOT" worktree add --quiet --detach "$OLD" "$REV" || exit 1
trap 'git -C "$ROOT" worktree remove --force "$OLD"' EXIT
cp "$ROOT/tests/test_hardening.py" "$ROOT/tests/support.py" "$OLD/tests/"
cp "$ROOT/tunelab/limits.py" "$OLD/tunelab/limits.py"
sed -i 's/max_retries=0)/max_retries=0, timeout=60)/' "$OLD/tests/support.py"
mkdir -p "$OLD/.tunelab" && ln -s "$ROOT/.tunelab/test-cache" "$OLD/.tunelab/test-cache"

run() {  # $1: checkout, $2: report name
    (cd "$1" && PYTHONPATH="$1" nice -n 10 "$PY" -m pytest "${SELECT[@]}" -p no:cacheprovider \
        -q -rA --timeout=240 --tb=line -o addopts="" 2>&1) > "$OUT/$2.txt"
    echo "$2 ($1): $(tail -n 1 "$OUT/$2.txt")"
}
run "$OLD" old
run "$ROOT" new
echo "per-test results: grep -E '^(PASSED|FAILED|ERROR)' $OUT/old.txt $OUT/new.txt"
