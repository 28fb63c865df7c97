#!/bin/bash
# bench/run.sh [--smoke]: ostree-bridge vs ostree-ext (the peer), same machine, same run.
# Builds the corpus, runs every benchmark for both tools (alternating, RUNS times), and writes
# bench/results/{results.md,chart.svg,times.tsv,bytes.tsv}. With --smoke: the tiny sample
# fixture, one run, output under $BENCH_WORK only (CI runs this so the script cannot rot).
# Pieces: lib/env.sh (private container config, measure), lib/corpus.sh (v1, v2, synthetic,
# derived image), lib/update.sh (update sizes), lib/cases.sh (timed benchmarks), lib/report.py.
set -euo pipefail
phase() { echo "== $* ($(date +%T), ${SECONDS}s)"; }
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
SMOKE=0; [ "${1:-}" = "--smoke" ] && SMOKE=1
RUNS=${RUNS:-3}; [ $SMOKE = 1 ] && RUNS=1
W=${BENCH_WORK:-/var/tmp/ob-bench}
BUDGETS=${BUDGETS:-"8 16 32 64 128"}
SYNTH_SIZES=${SYNTH_SIZES:-"256 1024"}           # MiB; the first and last give the slope
if [ $SMOKE = 1 ]; then BUDGETS="8"; SYNTH_SIZES="1 3"; fi
mkdir -p "$W"
command -v /usr/bin/time >/dev/null || apt-get install -y -qq time >/dev/null

phase "building ostree-bridge (release)"
(cd "$top" && cargo build --release -q -p ostree-container -p ostree-bridge-tests)
OURS="$top/target/release/ostree-container"
if [ -z "${PEER:-}" ] && [ -f "$top/../shared/bench/build-peer.sh" ]; then
  echo "== building the peer (cached)"
  PEER=$(bash "$top/../shared/bench/build-peer.sh")
fi
NEWSKOPEO=""
if [ -n "${PEER:-}" ]; then   # the peer reads containers-storage: only with a newer skopeo
  NEWSKOPEO=${NEWSKOPEO_DIR:-$HOME/.cache/ostree-bridge/peer-tools}/bin
  [ -x "$NEWSKOPEO/skopeo" ] || bash "$top/../shared/bench/get-newer-skopeo.sh" >/dev/null 2>&1 || true
fi

STORE="$W/cs"
. "$here/lib/env.sh"
. "$here/lib/corpus.sh"
. "$here/lib/update.sh"
. "$here/lib/cases.sh"
: > "$TIMES"; : > "$BYTES"

REPO="$W/repo"
if [ $SMOKE = 1 ]; then REPO="$W/smoke-repo"; corpus_smoke; else corpus_debian; fi
corpus_synth

unmount_under "$STORE"; rm -rf "$STORE"
phase "preparing the input images"
prepare_inputs
phase "update sizes"
update_table

for RUN in $(seq 1 "$RUNS"); do
  phase "run $RUN/$RUNS"
  one_run
done
# Remove the benchmark's images again; containers-storage leaves its overlay dir bind-mounted.
unmount_under "$STORE"; [ $SMOKE = 1 ] || rm -rf "$STORE"   # (the smoke's caller removes $BENCH_WORK)

ver() { "$@" 2>/dev/null | head -n1 || echo "?"; }
python3 - "$W/meta.json" <<PY
import json, os, platform, sys
cpu = next((l.split(":", 1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
mem = next((int(l.split()[1]) // 1024 for l in open("/proc/meminfo") if l.startswith("MemTotal")), 0)
json.dump({
  "corpus": """$TREE_DESC""", "v2": """$V2_DESC""", "runs": $RUNS,
  "synth": "$SYNTH_SIZES".split(), "budgets": [int(b) for b in "$BUDGETS".split()],
  "peer_version": "0.15.3",
  "machine": f"{os.cpu_count()} cores, {cpu}, {mem} MiB RAM; {platform.platform()}",
  "versions": "ostree-bridge $(git -C "$top" describe --always --dirty 2>/dev/null || echo ?) (release), "
              "ostree-ext 0.15.3 (published crate, ../shared/bench), "
              "libostree $(ostree --version | awk -F"'" '/Version/{print $2}'), "
              "$(ver skopeo --version) (the peer reading containers-storage: $( [ -n "$NEWSKOPEO" ] && ver "$NEWSKOPEO/skopeo" --version || echo -)), "
              "$(ver podman --version), $(ver rustc --version)",
  "command": ("bash bench/run.sh --smoke" if $SMOKE else "RUNS=$RUNS bash bench/run.sh"),
}, open(sys.argv[1], "w"), indent=1)
PY
if [ $SMOKE = 1 ]; then out="$W"; else out="$top/bench/results"; cp "$TIMES" "$BYTES" "$out/"; fi
python3 "$here/lib/report.py" "$W" "$out/results.md" "$out/chart.svg"
