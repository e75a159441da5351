#!/usr/bin/env bash
# Build the release handler and assemble the deployable zip:
#   scripts/package.sh [output.zip]        (default: target/partner-billing-export.zip)
#
# Target: x86_64-unknown-linux-musl (static) when that target is installed, else the gnu build.
# The gnu binary links glibc dynamically: it runs on the Functions Linux host images only if
# their glibc is at least the build machine's. Build on Debian 12 (glibc 2.36) or older to match
# the current Debian-12-based Functions v4 images; `rustup target add x86_64-unknown-linux-musl`
# (needs network access to the Rust toolchain servers, not available on the dev machines) removes
# the concern.
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
output="${1:-$root/target/partner-billing-export.zip}"
cd "$root"

if rustup target list --installed 2>/dev/null | grep -qx x86_64-unknown-linux-musl; then
  target=x86_64-unknown-linux-musl
else
  target=x86_64-unknown-linux-gnu
  echo "package: musl target not installed; building for $target (glibc $(ldd --version | head -1 | awk '{print $NF}'))" >&2
fi

if [[ $target == x86_64-unknown-linux-gnu ]]; then
  # Host target: the plain release build (shares target/release with `cargo build --release`).
  cargo build --release --locked --bin partner-billing-export
  binary="$root/target/release/partner-billing-export"
else
  cargo build --release --locked --target "$target" --bin partner-billing-export
  binary="$root/target/$target/release/partner-billing-export"
fi

"$binary" package --app-root "$root" --binary "$binary" --output "$output"
