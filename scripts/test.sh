#!/usr/bin/env bash
# Run the whole test suite: installs dependencies first (scripts/install.sh), then the static
# checks — import-linter's layer contracts, ruff and mypy (configured in pyproject.toml; about
# 15 s) — and then pytest. Any failing check fails the run before the tests start.
# Extra arguments go to pytest.
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
cd "$root"
./scripts/install.sh
failed=()
for check in "lint-imports" "ruff check ." "mypy"; do
  echo "== $check"
  # shellcheck disable=SC2086  # the check's words are meant to split
  .venv/bin/$check || failed+=("$check")
done
if ((${#failed[@]})); then
  echo "static checks failed: ${failed[*]}" >&2
  exit 1
fi
exec .venv/bin/python -m pytest -q "$@"
