#!/usr/bin/env bash
# Build the release handler so it runs on every Azure Functions Linux image, and assemble the
# deployable zip:
#   scripts/package.sh [output.zip]        (default: target/partner-billing-export.zip)
#
# Portability: the handler is linked against glibc 2.28 (cargo-zigbuild's
# x86_64-unknown-linux-gnu.2.28 target, with Zig as the linker), not against the build machine's
# glibc. Functions v4 Linux images are Debian 11 (glibc 2.31) or Debian 12 (glibc 2.36) based, and
# a plain `cargo build` on Debian 12 needs GLIBC_2.34, which a Debian 11 image does not have.
# scripts/check-glibc.py then reads the binary's ELF symbol versions and fails the build if any
# needs a glibc newer than the floor.
#
# Tools: `ziglang` and `cargo-zigbuild` from PyPI, installed by this script (pinned) into the
# project-local virtual environment target/zig-venv and reused afterwards. Nothing to install by
# hand besides Rust and Python 3.
#
# CARGO_TARGET_DIR is honoured (default: target/); the binary ends up in
# $CARGO_TARGET_DIR/x86_64-unknown-linux-gnu/release/partner-billing-export.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
output="${1:-$root/target/partner-billing-export.zip}"
cd "$root"

GLIBC_FLOOR=2.28
ZIGLANG_VERSION=0.17.1
CARGO_ZIGBUILD_VERSION=0.24.1
target="x86_64-unknown-linux-gnu.$GLIBC_FLOOR"
target_dir="${CARGO_TARGET_DIR:-$root/target}"
venv="$root/target/zig-venv"
stamp="$venv/.installed-ziglang-$ZIGLANG_VERSION-cargo-zigbuild-$CARGO_ZIGBUILD_VERSION"

log="$(mktemp)"
trap 'rm -f "$log"' EXIT

if [[ ! -f "$stamp" ]]; then
  echo "package: installing ziglang $ZIGLANG_VERSION and cargo-zigbuild $CARGO_ZIGBUILD_VERSION into $venv" >&2
  rm -rf "$venv"
  if ! { python3 -m venv "$venv" &&
    "$venv/bin/pip" install --quiet --disable-pip-version-check \
      "ziglang==$ZIGLANG_VERSION" "cargo-zigbuild==$CARGO_ZIGBUILD_VERSION"; } >"$log" 2>&1; then
    echo "package: installing the build tools into $venv failed:" >&2
    cat "$log" >&2
    exit 1
  fi
  touch "$stamp"
fi

# cargo-zigbuild runs Zig through `python3 -m ziglang` when no `zig` is on PATH: put the venv's
# python3 (which has ziglang) and cargo-zigbuild first.
export PATH="$venv/bin:$PATH"

echo "package: cargo zigbuild --release --target $target" >&2
cargo zigbuild --locked --release --target "$target" \
  -p partner-billing-export --bin partner-billing-export

# The target directory drops the glibc suffix.
binary="$target_dir/x86_64-unknown-linux-gnu/release/partner-billing-export"

# Refuse a binary that needs a newer glibc than the floor.
python3 "$root/scripts/check-glibc.py" --max "$GLIBC_FLOOR" "$binary"

# It must at least start (this machine's glibc is at least the floor).
if ! "$binary" --help >"$log" 2>&1; then
  echo "package: $binary does not start:" >&2
  cat "$log" >&2
  exit 1
fi

cargo xtask package --binary "$binary" --output "$output"
