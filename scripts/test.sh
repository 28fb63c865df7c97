#!/bin/bash
# test.sh: README's test command. Installs what is missing, checks formatting and lints, builds,
# builds the peer (ostree-ext) for the interop tests when ../shared/bench exists, runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install-deps.sh
command -v cargo >/dev/null || { echo "cargo not found: the Rust toolchain (rustup) must be installed" >&2; exit 1; }
cargo fmt --all -- --check
cargo clippy --workspace --all-targets --all-features -- -D warnings
cargo build --workspace --all-targets
if [ -f ../shared/bench/build-peer.sh ]; then
  echo "== building the peer (ostree-ext 0.15.3) for interop tests (cached)"
  bash ../shared/bench/build-peer.sh >/dev/null
fi
# Each test owns a private store; two at a time suit these 2-core machines.
log=$(mktemp)
trap 'rm -f "$log"' EXIT
set +e
cargo test --workspace --all-targets --no-fail-fast -- --test-threads="${TEST_THREADS:-2}" 2>&1 | tee "$log"
rc=${PIPESTATUS[0]}
set -e
# One closing line over every test binary.
summary=$(awk '/^test result:/ { for (i = 1; i <= NF; i++) { if ($(i+1) ~ /^passed/) p += $i; if ($(i+1) ~ /^failed/) f += $i; if ($(i+1) ~ /^ignored/) g += $i } }
     END { printf "tests: %d passed, %d failed, %d skipped\n", p, f, g }' "$log")
if [ "$rc" = 0 ]; then
  # The benchmark's smoke mode on the tiny fixture, so bench/run.sh cannot rot (not timed).
  echo "== bench/run.sh --smoke"
  smoke=$(mktemp -d /var/tmp/ob-bench-smoke.XXXXXX)
  BENCH_WORK="$smoke" bash bench/run.sh --smoke >/dev/null || rc=$?
  rm -rf "$smoke"
  [ "$rc" = 0 ] && echo "bench smoke: ok"
fi
echo "$summary"
exit "$rc"
