#!/usr/bin/env bash
# Set up everything the tests need on this machine, then run them all:
# unit tests (tests/) and end-to-end tests against real backends (crictl_tests/).
# Extra arguments go to pytest.
set -euo pipefail
source "$(dirname "${BASH_SOURCE[0]}")/venv.sh"

bash "$REPO_DIR/scripts/testenv.sh" up
ensure_venv test
cd "$REPO_DIR"
"$VENV/bin/ruff" check --quiet .
"$VENV/bin/mypy"  # its configuration, in pyproject.toml, names what it checks
exec "$VENV/bin/python" -m pytest -q "$@"
