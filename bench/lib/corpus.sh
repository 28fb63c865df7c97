# bench/lib/corpus.sh: the corpus (sourced by bench/run.sh).
#   Debian: bench/v1 = bookworm minbase (debootstrap); bench/v2 = v1 + the pending bookworm
#   security/updates upgrades + 2 new packages + edited /etc files, made with chroot apt-get.
#   Smoke: the built-in sample fixture as v1, a hand-edited copy as v2.
#   Synthetic: bench/synth-<MB> for MB in $SYNTH_SIZES, deterministic (seeded).
# Leaves: $REPO with bench/v1, bench/v2, bench/synth-*; trees $W/tree (v1), $W/tree-v2, $W/synth-*.

MIRROR=${MIRROR:-http://deb.debian.org/debian}
NEW_PKGS="less psmisc"

# ostreeify SRC DST: a rootfs -> an ostree-shaped tree (/etc -> /usr/etc, the dpkg database
# under /usr/lib/sysimage, empty /var and API dirs, a stub kernel so the image deploys).
ostreeify() {
  local T=$2
  rm -rf "$T"; cp -a "$1" "$T"
  mv "$T/etc" "$T/usr/etc"
  mkdir -p "$T/usr/lib/sysimage"
  mv "$T/var/lib/dpkg" "$T/usr/lib/sysimage/dpkg"
  find "$T/dev" "$T/proc" "$T/sys" "$T/run" "$T/tmp" -mindepth 1 -delete 2>/dev/null || true
  rm -rf "$T/var" && mkdir "$T/var"   # /var starts empty in an ostree system (tmpfiles seeds it)
  mkdir -p "$T/usr/lib/modules/6.1.0-bench" "$T/sysroot"
  printf 'stub kernel for the benchmark\n' > "$T/usr/lib/modules/6.1.0-bench/vmlinuz"
  printf 'stub initramfs\n' > "$T/usr/lib/modules/6.1.0-bench/initramfs.img"
}
commit_tree() { # REF DIR SUBJECT VERSION
  ostree commit --repo="$REPO" --branch="$1" --tree=dir="$2" -s "$3" \
    --add-metadata-string=version="$4" --add-metadata=ostree.bootable=true >/dev/null
}

corpus_debian() {
  if [ ! -d "$W/rootfs-v1/usr" ]; then
    command -v debootstrap >/dev/null || apt-get install -y -qq debootstrap >/dev/null
    phase "debootstrap bookworm minbase (a few minutes)"
    debootstrap --variant=minbase bookworm "$W/rootfs-v1.tmp" "$MIRROR" >"$W/debootstrap.log"
    mv "$W/rootfs-v1.tmp" "$W/rootfs-v1"
  fi
  if [ ! -f "$W/rootfs-v2/.bench-done" ]; then
    phase "v2: chroot apt-get upgrade (bookworm-updates, bookworm-security) + $NEW_PKGS + /etc edits"
    local R="$W/rootfs-v2"
    rm -rf "$R"; cp -a "$W/rootfs-v1" "$R"
    cat > "$R/etc/apt/sources.list" <<X
deb $MIRROR bookworm main
deb $MIRROR bookworm-updates main
deb ${MIRROR%/debian}/debian-security bookworm-security main
X
    cp /etc/resolv.conf "$R/etc/resolv.conf"
    unshare --mount --propagation private sh -ec "
      mount -t proc proc '$R/proc'
      chroot '$R' apt-get -qq update
      chroot '$R' apt list --upgradable 2>/dev/null | grep upgradable > '$W/v2-upgraded.txt' || true
      DEBIAN_FRONTEND=noninteractive chroot '$R' apt-get -qq -y upgrade
      DEBIAN_FRONTEND=noninteractive chroot '$R' apt-get -qq -y install --no-install-recommends $NEW_PKGS
      chroot '$R' apt-get clean" >"$W/v2-apt.log" 2>&1
    rm -f "$R/etc/resolv.conf"; touch "$R/etc/resolv.conf"   # as debootstrap left it
    echo bench-v2 > "$R/etc/hostname"
    printf '\nThis is bench v2.\n' >> "$R/etc/motd"
    printf '[bench]\nversion = 2\n' > "$R/etc/bench.conf"
    echo "ENV_PATH PATH=/usr/local/bin:/usr/bin:/bin" >> "$R/etc/login.defs"
    touch "$R/.bench-done"
  fi
  if ! ostree --repo="$REPO" rev-parse bench/v2 >/dev/null 2>&1; then
    phase "ostree-ifying and committing v1 and v2"
    rm -rf "$REPO"; ostree init --repo="$REPO" --mode=bare
    ostreeify "$W/rootfs-v1" "$W/tree"; commit_tree bench/v1 "$W/tree" "Debian bookworm minbase" 12
    ostreeify "$W/rootfs-v2" "$W/tree-v2"; rm -f "$W/tree-v2/.bench-done"
    commit_tree bench/v2 "$W/tree-v2" "Debian bookworm minbase, updated" 12.1
  fi
  TREE_DESC="Debian bookworm minbase ($(ostree --repo="$REPO" ls -R bench/v1 | grep -c '^-') files, $(du -sm --apparent-size "$W/tree" | cut -f1) MB)"
  V2_DESC="v2 = v1 + $(wc -l < "$W/v2-upgraded.txt") packages upgraded from bookworm-security/-updates ($(cut -d/ -f1 "$W/v2-upgraded.txt" | tr '\n' ' ' | sed 's/ $//')), 2 new ($NEW_PKGS), /etc edits (hostname, motd, login.defs, apt sources, a new bench.conf)"
}

corpus_smoke() {
  rm -rf "$REPO" "$W/tree" "$W/tree-v2"
  "$top/target/release/mkfixture" --repo "$REPO" --ref bench/v1 --sample >/dev/null
  ostree checkout --repo="$REPO" --force-copy bench/v1 "$W/tree"
  cp -a "$W/tree" "$W/tree-v2"
  printf 'updated hello docs\n' > "$W/tree-v2/usr/share/doc/hello/README"
  printf 'bench-v2\n' > "$W/tree-v2/usr/etc/hostname"
  printf 'new tool\n' > "$W/tree-v2/usr/bin/newtool"
  commit_tree bench/v2 "$W/tree-v2" "sample v2" 2
  TREE_DESC="built-in sample fixture"; V2_DESC="v2 = v1 with 1 file edited, 1 added, /etc/hostname edited"
}

corpus_synth() {
  local mb
  for mb in $SYNTH_SIZES; do
    if ! ostree --repo="$REPO" rev-parse "bench/synth-$mb" >/dev/null 2>&1 || [ ! -d "$W/synth-$mb/usr" ]; then
      phase "synthetic tree, $mb MiB"
      rm -rf "$W/synth-$mb"
      python3 "$here/lib/benchtool.py" synth "$W/synth-$mb" "$mb" 42
      ostree commit --repo="$REPO" --branch="bench/synth-$mb" --tree=dir="$W/synth-$mb" \
        -s "synthetic $mb MiB" --timestamp=2024-01-01T00:00:00Z >/dev/null
    fi
  done
}

# The derived image: podman build FROM our export of v1 (a few MB of new files, an /etc edit, a
# deleted file), in the private store; also staged as oci: layouts.
derived_image() {
  "$NS" "$OURS" encapsulate -q --repo "$REPO" bench/v1 "${CS}localhost/bench-base:1" >/dev/null
  mkdir -p "$W/ctx"
  python3 -c "import random,sys; sys.stdout.buffer.write(random.Random(7).randbytes(4000000))" > "$W/ctx/blob.bin"
  cat > "$W/ctx/Containerfile" <<X
FROM localhost/bench-base:1
COPY blob.bin /usr/share/bench/blob.bin
RUN echo 'bench-derived' >> /etc/issue && rm -f /usr/bin/yes && echo done > /usr/share/bench/marker
X
  "$NS" podman build -q --network=none --pull=never -t localhost/bench-derived:1 "$W/ctx" >/dev/null
  "$NS" skopeo copy -q "${CS}localhost/bench-base:1" "oci:$W/img-base-cs" >/dev/null
  "$NS" skopeo copy -q "${CS}localhost/bench-derived:1" "oci:$W/img-derived" >/dev/null
}
