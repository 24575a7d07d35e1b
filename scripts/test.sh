#!/usr/bin/env bash
# The whole test suite, from a fresh machine: system servers, the virtualenv, lint, types, tests.
# Every database test runs on SQLite and on a real PostgreSQL server started for the run;
# Redis is started for the run too. Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/system-deps.sh
scripts/bootstrap.sh dev
if .venv/bin/python -m pip list 2>/dev/null | grep -qi '^nvidia-'; then
    echo "a CUDA build of torch got installed; the project wants the CPU wheel (torch==2.13.0)" >&2
    exit 1
fi
echo "== ruff"
.venv/bin/ruff check .
.venv/bin/ruff format --check .
echo "== mypy"
.venv/bin/mypy .
echo "== pytest"
.venv/bin/pytest "$@"
