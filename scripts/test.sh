#!/usr/bin/env bash
# Run the whole test suite: installs dependencies first (scripts/install.sh).
# Extra arguments go to pytest.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
./scripts/install.sh
exec .venv/bin/python -m pytest -q "$@"
