#!/usr/bin/env bash
# The proof behind docs/hardening.md: every defect of issue 11 has a test that fails on
# the code before its fix and passes on this checkout. Not part of CI (minutes).
#
#   scripts/prove-hardening.sh            # or: make prove-hardening
#   scripts/prove-hardening.sh -k role    # only the hardening tests pytest -k selects
#
# 1. tests/test_hardening.py of this checkout, run against the code before the
#    hardening merge (253a1ac^1) and against this checkout. The old code gets this
#    checkout's tests/test_hardening.py and tests/support.py with two adaptations and
#    nothing else: tunelab/limits.py (which did not exist then) is copied in so the
#    tests can import its constants (no old module reads it), and the SDK client of
#    tests/support.py gets a 60 s timeout, so that a request the old server never
#    answers fails instead of hanging.
# 2. Two defects were fixed before that merge, in refactors today's tests need, so
#    their old code is tested directly, by a small test written here:
#    - defect 5 (two jobs, one model name), fixed in 2280105 (jobs-core): at 2280105^,
#      16 jobs created at once must get 16 names; tests/test_jobs_checkpoints.py
#      guards the fix on this checkout;
#    - defect 8's SQLite write lock on reads, fixed in 21dfafa (runtime): at 21dfafa^,
#      a read must not wait for a writer; test_reads_do_not_wait_for_a_writer guards it.
#
# Reports: .tunelab/hardening-proof/*.txt; the last lines printed sum them up.
set -uo pipefail
ROOT=$(git rev-parse --show-toplevel)
PY=$ROOT/.venv/bin/python
OUT=$ROOT/.tunelab/hardening-proof
TMP=$(mktemp -d)
mkdir -p "$OUT" "$ROOT/.tunelab/test-cache"
cleanup() {
    for wt in "$TMP"/*/; do git -C "$ROOT" worktree remove --force "$wt" 2>/dev/null; done
    rm -rf "$TMP"
}
trap cleanup EXIT

checkout() {  # $1: revision, $2: directory name; a worktree sharing the test model cache
    git -C "$ROOT" worktree add --quiet --detach "$TMP/$2" "$1" || exit 1
    mkdir -p "$TMP/$2/.tunelab"
    ln -s "$ROOT/.tunelab/test-cache" "$TMP/$2/.tunelab/test-cache"
}

run() {  # $1: checkout, $2: report name, $3...: pytest arguments
    local dir=$1 name=$2
    shift 2
    (cd "$dir" && PYTHONPATH="$dir" nice -n 10 "$PY" -m pytest "$@" -p no:cacheprovider \
        -q -rA --tb=line --timeout=300 -o addopts="" 2>&1) > "$OUT/$name.txt"
    printf '%-22s %s\n' "$name" "$(tail -n 1 "$OUT/$name.txt")"
}

SELECT=("$@")

checkout 253a1ac^1 old
cp "$ROOT/tests/test_hardening.py" "$ROOT/tests/support.py" "$TMP/old/tests/"
cp "$ROOT/tunelab/limits.py" "$TMP/old/tunelab/limits.py"
sed -i 's/max_retries=0)/max_retries=0, timeout=60)/' "$TMP/old/tests/support.py"

checkout 2280105^ names
cat > "$TMP/names/tests/test_defect5.py" <<'PY'
from types import SimpleNamespace

from tunelab.ids import new_id
from tunelab.jobs.service import final_model_name


def test_jobs_created_at_once_get_distinct_model_names():
    jobs = [
        SimpleNamespace(id=new_id("ftjob-"), base_model="m", project="p", suffix=None)
        for _ in range(16)
    ]
    assert len({final_model_name(job) for job in jobs}) == 16
PY

checkout 21dfafa^ sqlite
cat > "$TMP/sqlite/tests/test_defect8_sqlite.py" <<'PY'
import threading

from sqlalchemy import text

from tunelab.db.base import make_engine, make_sessionmaker


def test_reads_do_not_wait_for_a_writer(tmp_path):
    engine = make_engine(f"sqlite:///{tmp_path}/t.db")
    with engine.begin() as c:
        c.execute(text("CREATE TABLE t (x INTEGER)"))
    session = make_sessionmaker(engine)
    holding, release, read = threading.Event(), threading.Event(), []

    def writer():
        with session.begin() as s:
            s.execute(text("INSERT INTO t VALUES (1)"))
            holding.set()
            release.wait(30)

    def reader():
        try:
            with session() as s:
                read.append(list(s.execute(text("SELECT x FROM t"))))
        except Exception as e:
            read.append(e)

    w = threading.Thread(target=writer)
    w.start()
    try:
        assert holding.wait(10)
        r = threading.Thread(target=reader)
        r.start()
        r.join(10)  # a reader that waits for the write lock is still waiting
        assert not r.is_alive() and read and not isinstance(read[0], Exception), read
    finally:
        release.set()
        w.join(30)
PY

run "$TMP/old" hardening-old tests/test_hardening.py "${SELECT[@]}"
run "$ROOT" hardening-new tests/test_hardening.py "${SELECT[@]}"
run "$TMP/names" names-old tests/test_defect5.py
run "$ROOT" names-new tests/test_jobs_checkpoints.py
run "$TMP/sqlite" sqlite-old tests/test_defect8_sqlite.py
echo "per test: grep -E '^(PASSED|FAILED|ERROR)' $OUT/*.txt"
