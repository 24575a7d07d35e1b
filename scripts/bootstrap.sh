#!/usr/bin/env bash
# Create .venv and install Sastre with the pinned versions in constraints.txt.
# Usage: scripts/bootstrap.sh [dev]    ("dev" adds the test and lint tools)
set -euo pipefail
cd "$(dirname "$0")/.."

# The interpreter .venv is made with (an existing .venv is kept: remove it to make it again):
# $PYTHON if set; else the distribution's own /usr/bin/python3 when it is 3.11 or newer and can
# make a virtualenv; else python3 on the PATH. Debian builds its interpreter with profile-guided
# and link-time optimisation and links libpython in; a default pyenv or source build has neither,
# and answered 15-25% fewer inbound SMS a second (README, "Benchmarks").
makes_venvs() { "$1" -c 'import ensurepip, sys, venv; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; }
if [ ! -x .venv/bin/python ]; then
    if [ -n "${PYTHON:-}" ]; then
        python=$PYTHON
    elif [ -x /usr/bin/python3 ] && makes_venvs /usr/bin/python3; then
        python=$(readlink -f /usr/bin/python3)  # python3.11 itself: a newer default leaves .venv be
    else
        python=python3
    fi
    if ! makes_venvs "$python"; then
        echo "Sastre needs Python 3.11 or newer that can make a virtualenv, and $python cannot" \
            "(on Debian: apt-get install python3-venv; or set PYTHON=/path/to/python3.11)" >&2
        exit 1
    fi
    "$python" -m venv .venv
fi
extra=""
[ "${1:-}" = "dev" ] && extra="[dev,semantic]"  # the tests cover the optional matcher too
.venv/bin/python -m pip install --quiet --disable-pip-version-check \
    --constraint constraints.txt --editable ".${extra}"
