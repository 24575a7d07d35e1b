#!/usr/bin/env bash
# Create .venv and install Sastre with the pinned versions in constraints.txt.
# Usage: scripts/bootstrap.sh [dev]    ("dev" adds the test and lint tools)
set -euo pipefail
cd "$(dirname "$0")/.."

# The interpreter: $PYTHON if set; else the distribution's own /usr/bin/python3 when it is 3.11 or
# newer and can make a virtualenv; else python3 on the PATH. Debian builds its interpreter with
# profile-guided and link-time optimisation and libpython linked in; a default pyenv or source
# build has neither, and answered the inbound SMS benchmark a fifth to a third slower (README,
# "Benchmarks").
usable() { "$1" -c 'import ensurepip, sys, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; }
if [ -n "${PYTHON:-}" ]; then
    python=$PYTHON
elif [ -x /usr/bin/python3 ] && usable /usr/bin/python3; then
    python=/usr/bin/python3
else
    python=python3
fi
if ! usable "$python"; then
    echo "Sastre needs Python 3.11 or newer with venv (set PYTHON=/path/to/python3.11)" >&2
    exit 1
fi
[ -x .venv/bin/python ] || "$python" -m venv .venv
extra=""
[ "${1:-}" = "dev" ] && extra="[dev,semantic]"  # the tests cover the optional matcher too
.venv/bin/python -m pip install --quiet --disable-pip-version-check \
    --constraint constraints.txt --editable ".${extra}"
