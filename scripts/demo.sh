#!/bin/bash
# demo.sh: README's main-job command. Installs what is missing, builds, and runs the whole
# path on the built-in sample OS in a private, temporary container world.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
command -v cargo >/dev/null || { echo "cargo not found: the Rust toolchain (rustup) must be installed" >&2; exit 1; }
cargo build -q --workspace
exec target/debug/demo
