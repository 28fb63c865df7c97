#!/bin/bash
# bench/run.sh [--smoke]: ostree-bridge vs ostree-ext (the peer), same machine, same run.
# Writes bench/results/export.md (or, with --smoke, a throwaway copy under $BENCH_WORK).
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
top=$(cd "$here/.." && pwd)
SMOKE=0; [ "${1:-}" = "--smoke" ] && SMOKE=1
RUNS=${RUNS:-5}; [ $SMOKE = 1 ] && RUNS=1
W=${BENCH_WORK:-/var/tmp/ob-bench}
mkdir -p "$W"
command -v /usr/bin/time >/dev/null || apt-get install -y -qq time >/dev/null

echo "== building ostree-bridge (release)"
(cd "$top" && cargo build --release -q -p ostree-container -p ostree-bridge-tests)
OURS="$top/target/release/ostree-container"
if [ -z "${PEER:-}" ] && [ -f "$top/../shared/bench/build-peer.sh" ]; then
  echo "== building the peer (cached)"
  PEER=$(bash "$top/../shared/bench/build-peer.sh")
fi

REPO="$W/repo"
if [ $SMOKE = 1 ]; then
  REPO="$W/smoke-repo"; rm -rf "$REPO"
  "$top/target/release/mkfixture" --repo "$REPO" --ref bench/v1 --sample >/dev/null
  TREE_DESC="built-in sample fixture"
else
  if [ ! -d "$W/rootfs-v1/usr" ]; then
    command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null
    echo "== debootstrap bookworm minbase (a few minutes)"
    debootstrap --variant=minbase bookworm "$W/rootfs-v1" http://deb.debian.org/debian >"$W/debootstrap.log"
  fi
  if ! ostree --repo="$REPO" rev-parse bench/v1 >/dev/null 2>&1; then
    echo "== ostree-ifying and committing the corpus"
    rm -rf "$W/tree" "$REPO"
    cp -a "$W/rootfs-v1" "$W/tree"
    T="$W/tree"
    mv "$T/etc" "$T/usr/etc"
    mkdir -p "$T/usr/lib/sysimage"
    mv "$T/var/lib/dpkg" "$T/usr/lib/sysimage/dpkg"
    find "$T/dev" "$T/proc" "$T/sys" "$T/run" "$T/tmp" -mindepth 1 -delete 2>/dev/null || true
    # /var starts empty in an ostree system (tmpfiles seeds it at boot).
    rm -rf "$T/var" && mkdir "$T/var"
    ostree init --repo="$REPO" --mode=bare
    ostree commit --repo="$REPO" --branch=bench/v1 --tree=dir="$T" -s "Debian bookworm minbase" \
      --add-metadata-string=version=12 >/dev/null
  fi
  TREE_DESC="Debian bookworm minbase ($(ostree --repo="$REPO" ls -R bench/v1 | grep -c '^-') files)"
fi

STORE="$W/cstor"
CONF="$W/conf"; mkdir -p "$CONF"
cat > "$CONF/storage.conf" <<X
[storage]
driver = "overlay"
graphroot = "$STORE/root"
runroot = "$STORE/run"
X
export CONTAINERS_STORAGE_CONF="$CONF/storage.conf"
CS="containers-storage:[overlay@$STORE/root+$STORE/run]"

results="$W/times.tsv"; : > "$results"
measure() { # name tool cmd...
  local name=$1 tool=$2; shift 2
  if ! /usr/bin/time -f '%e %M' -o "$W/time.out" "$@" >/dev/null 2>"$W/cmd.err"; then
    echo "benchmark '$name' ($tool) failed:" >&2; cat "$W/cmd.err" >&2
    [ "$tool" = ours ] && exit 1   # ours must work; a failing peer is reported in the table
    echo -e "$name\t$tool\tFAIL" >> "$results"; return 0
  fi
  echo -e "$name\t$tool\t$(tail -1 "$W/time.out")" >> "$results"
}

unmount_under() { awk -v p="$1" '$2 ~ "^"p {print $2}' /proc/self/mounts | sort -r | xargs -r -n1 umount; }
unmount_under "$STORE"; rm -rf "$STORE"
for i in $(seq 1 "$RUNS"); do
  echo "== run $i/$RUNS"
  rm -rf "$W/out-"*
  measure "encapsulate oci: gzip" ours "$OURS" encapsulate -q --repo "$REPO" bench/v1 "oci:$W/out-ours"
  [ -n "${PEER:-}" ] && measure "encapsulate oci: gzip" peer "$PEER" container encapsulate --repo "$REPO" bench/v1 "oci:$W/out-peer"
  measure "encapsulate oci: zstd" ours "$OURS" encapsulate -q --compression zstd --repo "$REPO" bench/v1 "oci:$W/out-ours-zstd"
  measure "encapsulate containers-storage:" ours "$OURS" encapsulate -q --repo "$REPO" bench/v1 "${CS}localhost/bench:ours$i"
  [ -n "${PEER:-}" ] && measure "encapsulate containers-storage:" peer "$PEER" container encapsulate --repo "$REPO" bench/v1 "${CS}localhost/bench:peer$i"
  if [ $SMOKE = 0 ]; then
    measure "floor: tar | sha256sum" floor bash -c "tar -C '$W/tree' -cf - . | sha256sum"
    measure "floor: tar | gzip -6" floor bash -c "tar -C '$W/tree' -cf - . | gzip -6 | wc -c"
  fi
done
"$OURS" encapsulate --json -q --repo "$REPO" bench/v1 "oci:$W/out-ours-json" > "$W/ours.json"
# Remove the benchmark's images again; containers-storage leaves its overlay dir bind-mounted.
unmount_under "$STORE"
rm -rf "$STORE"

out="$top/bench/results/export.md"; [ $SMOKE = 1 ] && out="$W/export-smoke.md"
python3 - "$results" "$out" "$TREE_DESC" "$RUNS" "$W/ours.json" <<'PY'
import sys, statistics, json, subprocess, platform, os
res, out, desc, runs, ours_json = sys.argv[1:6]
rows = {}
for line in open(res):
    name, tool, t = line.rstrip("\n").split("\t")
    if t == "FAIL":
        rows.setdefault(name, {}).setdefault(tool, []).append(None); continue
    e, m = t.split()
    rows.setdefault(name, {}).setdefault(tool, []).append((float(e), int(m)))
def ver(cmd):
    try: return subprocess.run(cmd, capture_output=True, text=True).stdout.strip().splitlines()[0]
    except Exception: return "?"
cpu = next((l.split(":",1)[1].strip() for l in open("/proc/cpuinfo") if l.startswith("model name")), "?")
rep = json.load(open(ours_json))
L = ["# Export benchmark: ostree-bridge vs ostree-ext 0.15.3", "",
     f"Corpus: {desc}. {runs} runs each, alternating; wall time (s) median [min–max], peak RSS (MiB) median.",
     f"Machine: {os.cpu_count()} cores, {cpu}; {platform.platform()}.",
     f"Versions: libostree {next((l.split(':',1)[1].strip().strip(chr(39)) for l in subprocess.run(['ostree','--version'],capture_output=True,text=True).stdout.splitlines() if 'Version' in l), '?')}, {ver(['skopeo','--version'])}.",
     f"ostree-bridge image: {len(rep['layers'])} layers, {rep['total_size']/1e6:.1f} MB ({rep['compression']}), components from {', '.join(rep['chunking']['sources'])} ({rep['chunking']['packages']} packages).", "",
     "| benchmark | ostree-bridge | peer (ostree-ext) | ratio (ours/peer) |", "| --- | --- | --- | --- |"]
def cell(v):
    if not v: return "–", None
    if any(x is None for x in v): return f"failed ({sum(x is None for x in v)}/{len(v)} runs)", None
    e = sorted(x[0] for x in v); m = statistics.median(x[1] for x in v) / 1024
    med = statistics.median(e)
    return f"{med:.2f} [{e[0]:.2f}–{e[-1]:.2f}] s, {m:.0f} MiB", med
for name, t in rows.items():
    name = name.replace("|", "\\|")
    if "floor" in t:
        c, _ = cell(t["floor"]); L.append(f"| {name} | {c} | | |"); continue
    a, am = cell(t.get("ours")); b, bm = cell(t.get("peer"))
    r = f"{am/bm:.2f}×" if am and bm else "–"
    L.append(f"| {name} | {a} | {b} | {r} |")
L.append("")
L.append("Reproduce: `bash bench/run.sh` (RUNS=5 by default).")
open(out, "w").write("\n".join(L) + "\n")
print("\n".join(L))
PY
