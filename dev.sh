#!/bin/sh
# Set up the virtual environment (once) and run a task: demo, test, run, lint.
# Needs only Python 3.11+ on PATH (as python3, or set PYTHON).
set -eu
cd "$(dirname "$0")"
PYTHON="${PYTHON:-python3}"
VENV="${VENV:-.venv}"
stamp="$VENV/.installed"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
    "$PYTHON" -c 'import sys; sys.exit(sys.version_info < (3, 11))' \
        || { echo "dev.sh: Python 3.11 or newer is required ($PYTHON is $("$PYTHON" -V 2>&1))" >&2; exit 2; }
    [ -x "$VENV/bin/python" ] || "$PYTHON" -m venv "$VENV"
    "$VENV/bin/python" -m pip install --quiet --upgrade pip
    "$VENV/bin/python" -m pip install --quiet -e '.[test]'
    touch "$stamp"
fi
task="${1:-demo}"
[ $# -gt 0 ] && shift
case "$task" in
    demo) exec "$VENV/bin/dispatcher" demo "$@" ;;
    run) exec "$VENV/bin/dispatcher" run "$@" ;;
    test) exec "$VENV/bin/python" -m pytest "$@" ;;
    lint)
        "$VENV/bin/ruff" check .
        "$VENV/bin/ruff" format --check .
        exec "$VENV/bin/mypy" ;;
    *) echo "usage: ./dev.sh [demo|run|test|lint] [args...]" >&2; exit 2 ;;
esac
