#!/usr/bin/env bash
# Install Sastre and run it on embedded defaults (SQLite under ./var, no Redis) with demo data.
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/bootstrap.sh
exec .venv/bin/sastre demo "$@"
