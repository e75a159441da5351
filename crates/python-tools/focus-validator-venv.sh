#!/usr/bin/env bash
# Prepares target/focus-validator-venv with the pinned official FOCUS validator (PyPI
# focus-validator, which needs Python >= 3.12); prints the venv's python (venv.sh). The
# interpreter is PYTHON312 when set, else pyenv's 3.12.1, else python3.12 on PATH.
set -euo pipefail
FOCUS_VALIDATOR_VERSION=2.2.1
# The validator pins numpy < 2 but not pyarrow, whose newest releases need numpy 2: pyarrow
# is pinned to a release that loads with numpy 1.26.
PYARROW_VERSION=19.0.1
py="${PYTHON312:-}"
if [ -z "$py" ] && command -v pyenv >/dev/null 2>&1 && [ -x "$(pyenv root)/versions/3.12.1/bin/python3" ]; then
  py="$(pyenv root)/versions/3.12.1/bin/python3"
fi
exec "$(dirname "$0")/venv.sh" focus-validator-venv \
  "focus-validator-$FOCUS_VALIDATOR_VERSION-pyarrow-$PYARROW_VERSION" "${py:-python3.12}" \
  "focus-validator==$FOCUS_VALIDATOR_VERSION" "pyarrow==$PYARROW_VERSION"
