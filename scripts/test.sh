#!/usr/bin/env bash
# Run the whole test suite: bash scripts/test.sh [pytest arguments]
# Creates or reuses .venv and installs requirements.txt first.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/_venv.sh
"$PYTHON" -m pytest "$@"
