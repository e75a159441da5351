#!/usr/bin/env bash
# Static checks of infra/ (no Azure access needed):
#   1. every .bicep file parses with pycep (the Bicep parser checkov itself uses);
#   2. checkov's Bicep checks pass (suppressions live beside the resource as
#      `#checkov:skip=CKV_...: reason`);
#   3. the Python tests in tests/infra (unittest): no property or app setting that Flex
#      Consumption rejects reaches a Flex site (test_flex_site.py), the Graph credential defaults
#      never deploy a combination the handler refuses at start (test_graph_defaults.py), and the
#      glibc floor checker (scripts/check-glibc.py) accepts old and rejects new symbol versions
#      (test_check_glibc.py).
# Tools are installed once into target/infra-venv from PyPI (pinned) and reused.
# Quiet on success; prints the failing output otherwise.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$root/target/infra-venv"
# checkov 3.3.30 pins pycep-parser 0.5.1; pin both so the venv is reproducible.
CHECKOV_VERSION=3.3.30
PYCEP_VERSION=0.5.1
stamp="$venv/.installed-checkov-$CHECKOV_VERSION-pycep-$PYCEP_VERSION"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT

if [[ ! -f "$stamp" ]]; then
  rm -rf "$venv"
  if ! { python3 -m venv "$venv" &&
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
      "checkov==$CHECKOV_VERSION" "pycep-parser==$PYCEP_VERSION"; } >"$log" 2>&1; then
    echo "check-infra: installing checkov/pycep-parser into $venv failed:" >&2
    cat "$log" >&2
    exit 1
  fi
  touch "$stamp"
fi

# 1. Parse every Bicep file.
if ! "$venv/bin/python" - "$root/infra" >"$log" 2>&1 <<'PY'
import pathlib, sys
from pycep import BicepParser

failed = False
files = sorted(pathlib.Path(sys.argv[1]).rglob("*.bicep"))
if not files:
    print("no .bicep files under", sys.argv[1]); sys.exit(1)
parser = BicepParser()
for f in files:
    try:
        parser.parse(file_path=f)
    except Exception as e:  # pycep raises lark errors with line/column
        failed = True
        print(f"{f}: {type(e).__name__}: {e}")
sys.exit(1 if failed else 0)
PY
then
  echo "check-infra: Bicep parse errors:" >&2
  cat "$log" >&2
  exit 1
fi

# 2. checkov.
if ! "$venv/bin/checkov" -d "$root/infra" --framework bicep --quiet --compact \
  --skip-download >"$log" 2>&1; then
  echo "check-infra: checkov found failed checks:" >&2
  cat "$log" >&2
  exit 1
fi

# 3. tests/infra (unittest, with pycep from the venv).
if ! "$venv/bin/python" -m unittest discover -s "$root/tests/infra" -t "$root/tests/infra" \
  >"$log" 2>&1; then
  echo "check-infra: tests/infra failed:" >&2
  cat "$log" >&2
  exit 1
fi
