#!/usr/bin/env bash
# The test command. On a fresh machine it provisions what the tests need (a virtualenv from the
# lock file, and the services the integration tests talk to), then runs ruff, mypy and pytest.
# Integration tests fail, never skip, when a service is missing.
set -euo pipefail
cd "$(dirname "$0")/.."
root=$(pwd)

if [ ! -x .venv/bin/python ]; then python3 -m venv .venv; fi
.venv/bin/python -m pip install -q --upgrade pip >/dev/null
.venv/bin/python -m pip install -q -c requirements.lock -e '.[dev]'

bash tests/services/provision.sh

echo "== ruff"; .venv/bin/ruff check .
echo "== mypy"; .venv/bin/mypy
echo "== pytest"
set +e
# a hard ceiling: a hang (even at interpreter exit) fails the run instead of eating CI's whole budget
timeout --kill-after=30 3600 .venv/bin/python -m pytest "$@"
rc=$?
if [ "$rc" -eq 124 ] || [ "$rc" -eq 137 ]; then echo "pytest did not finish within an hour" >&2; fi
set -e
# pytest exits 5 when it collected nothing: that is a failure of the test command, not a pass
if [ "$rc" -eq 5 ]; then echo "no tests ran" >&2; exit 1; fi
exit "$rc"
