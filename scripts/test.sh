#!/usr/bin/env bash
# Run the whole test suite: bash scripts/test.sh [pytest arguments]
# Creates or reuses .venv and installs requirements.txt first.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
# Cached bytecode, also where the environment turns it off (PYTHONDONTWRITEBYTECODE, common in containers):
# pytest then rewrites the test modules' asserts once, not in every run and worker (about 6 s a worker).
unset PYTHONDONTWRITEBYTECODE
# Two pytest-xdist workers (M4CEA_TEST_WORKERS=N for another count, 0 for one process), each test file on
# one worker (--dist loadfile: the module fixtures, e.g. a tiny fine-tuned run, are made once).
"$PYTHON" -m pytest -n "${M4CEA_TEST_WORKERS:-2}" --dist loadfile "$@"
