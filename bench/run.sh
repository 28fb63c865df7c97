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

STORE="$W/cs"
CONF="$W/conf"; mkdir -p "$CONF/tmp"
cat > "$CONF/storage.conf" <<X
[storage]
driver = "overlay"
graphroot = "$STORE/root"
runroot = "$STORE/rr"
X
cat > "$CONF/containers.conf" <<X
[containers]
netns = "none"
default_ulimits = ["nofile=$(ulimit -Hn):$(ulimit -Hn)", "nproc=32768:32768"]
[network]
network_config_dir = "$CONF/cni"
[engine]
runtime = "runc"
cgroup_manager = "cgroupfs"
events_logger = "file"
tmp_dir = "$CONF/tmp/libpod"
lock_type = "file"
X
echo '{"auths":{}}' > "$CONF/auth.json"
export CONTAINERS_STORAGE_CONF="$CONF/storage.conf" CONTAINERS_CONF="$CONF/containers.conf" REGISTRY_AUTH_FILE="$CONF/auth.json"
# containers/image writes a blob-info cache under /var/lib/containers as root: run the container
# tools in a private mount namespace where /var/lib is read-only (as the tests do).
NS="$CONF/ns.sh"
cat > "$NS" <<'X'
#!/bin/sh
exec /usr/bin/unshare --mount --propagation private -- /bin/sh -c '
  /bin/mount -n -o bind,ro /var/lib /var/lib || exit 125
  if [ -d /var/lib/containers ]; then /bin/mount -n -t tmpfs nsvlc /var/lib/containers || exit 125; fi
  exec "$@"' ns "$@"
X
chmod +x "$NS"
CS="containers-storage:[overlay@$STORE/root+$STORE/rr]"

results="$W/times.tsv"; : > "$results"
measure() { # name tool cmd...
  local name=$1 tool=$2; shift 2
  if ! /usr/bin/time -f '%e %M' -o "$W/time.out" "$NS" "$@" >/dev/null 2>"$W/cmd.err"; then
    echo "benchmark '$name' ($tool) failed:" >&2; cat "$W/cmd.err" >&2
    [ "$tool" = ours ] && exit 1   # ours must work; a failing peer is reported in the table
    echo -e "$name\t$tool\tFAIL" >> "$results"; return 0
  fi
  echo -e "$name\t$tool\t$(tail -1 "$W/time.out")" >> "$results"
}

unmount_under() { awk -v p="$1" '$2 ~ "^"p {print $2}' /proc/self/mounts | sort -r | xargs -r -n1 umount; }
unmount_under "$STORE"; rm -rf "$STORE"
# Import inputs: both tools' oci: images of v1, and a derived image built by podman on top of
# ours (a few MB of new files, an edited /etc file, a deleted file), staged as oci: layouts
# read by both (Debian's skopeo cannot serve containers-storage to the peer).
rm -rf "$W/img-"*
"$NS" "$OURS" encapsulate -q --repo "$REPO" bench/v1 "oci:$W/img-ours" >/dev/null
[ -n "${PEER:-}" ] && "$NS" "$PEER" container encapsulate --repo "$REPO" bench/v1 "oci:$W/img-peer" >/dev/null
"$NS" "$OURS" encapsulate -q --repo "$REPO" bench/v1 "${CS}localhost/bench-base:1" >/dev/null
mkdir -p "$W/ctx"
head -c 4000000 /dev/urandom > "$W/ctx/blob.bin"
cat > "$W/ctx/Containerfile" <<X
FROM localhost/bench-base:1
COPY blob.bin /usr/share/bench/blob.bin
RUN echo 'bench-derived' >> /etc/issue && rm -f /usr/bin/yes && echo done > /usr/share/bench/marker
X
"$NS" podman build -q --network=none --pull=never -t localhost/bench-derived:1 "$W/ctx" >/dev/null
"$NS" skopeo copy -q "${CS}localhost/bench-base:1" "oci:$W/img-base-cs" >/dev/null
"$NS" skopeo copy -q "${CS}localhost/bench-derived:1" "oci:$W/img-derived" >/dev/null
fresh() { rm -rf "$1"; ostree init --repo="$1" --mode=bare; }

for i in $(seq 1 "$RUNS"); do
  echo "== run $i/$RUNS"
  fresh "$W/r-ours"; measure "unencapsulate oci: (our image, fresh repo)" ours "$OURS" unencapsulate -q --repo "$W/r-ours" "ostree-unverified-image:oci:$W/img-ours"
  if [ -n "${PEER:-}" ]; then
    fresh "$W/r-peer"; measure "unencapsulate oci: (our image, fresh repo)" peer "$PEER" container unencapsulate --repo "$W/r-peer" "ostree-unverified-image:oci:$W/img-ours"
    fresh "$W/r-ours"; measure "unencapsulate oci: (peer's image, fresh repo)" ours "$OURS" unencapsulate -q --repo "$W/r-ours" "ostree-unverified-image:oci:$W/img-peer"
    fresh "$W/r-peer"; measure "unencapsulate oci: (peer's image, fresh repo)" peer "$PEER" container unencapsulate --repo "$W/r-peer" "ostree-unverified-image:oci:$W/img-peer"
  fi
  fresh "$W/r-ours"; "$NS" "$OURS" image pull -q "$W/r-ours" "oci:$W/img-base-cs" >/dev/null
  measure "image pull derived over present base" ours "$OURS" image pull -q "$W/r-ours" "ostree-unverified-image:oci:$W/img-derived"
  if [ -n "${PEER:-}" ]; then
    fresh "$W/r-peer"; "$NS" "$PEER" container image pull "$W/r-peer" "ostree-unverified-image:oci:$W/img-base-cs" >/dev/null
    measure "image pull derived over present base" peer "$PEER" container image pull "$W/r-peer" "ostree-unverified-image:oci:$W/img-derived"
  fi

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

out="$top/bench/results/results.md"; [ $SMOKE = 1 ] && out="$W/results-smoke.md"
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
L = ["# Benchmark: ostree-bridge vs ostree-ext 0.15.3", "",
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
