#!/usr/bin/env bash
# Create .venv and install Sastre with the pinned versions in constraints.txt.
# Usage: scripts/bootstrap.sh [dev]    ("dev" adds the test and lint tools)
set -euo pipefail
cd "$(dirname "$0")/.."

python=${PYTHON:-python3}
if ! "$python" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
    echo "Sastre needs Python 3.11 or newer (set PYTHON=/path/to/python3.11)" >&2
    exit 1
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
extra=""
[ "${1:-}" = "dev" ] && extra="[dev,semantic]"  # the tests cover the optional matcher too
.venv/bin/python -m pip install --quiet --disable-pip-version-check \
    --constraint constraints.txt --editable ".${extra}"
