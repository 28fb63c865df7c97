# bench/lib/cases.sh: the timed benchmarks (sourced by bench/run.sh). Each bm_* takes the tool
# (ours or peer) and times one run; both() runs a benchmark for the two tools, ours first on odd
# runs and the peer first on even ones.

both() {
  local fn=$1; shift
  if [ -z "${PEER:-}" ]; then "$fn" ours "$@"; return; fi
  if [ $((RUN % 2)) = 1 ]; then "$fn" ours "$@"; "$fn" peer "$@" || true
  else "$fn" peer "$@" || true; "$fn" ours "$@"; fi
}

bm_export_oci() {
  rm -rf "$W/out-$1"
  case $1 in
    ours) measure "export → oci: (gzip)" ours "$OURS" encapsulate -q --repo "$REPO" bench/v1 "oci:$W/out-ours" ;;
    peer) measure "export → oci: (gzip)" peer "$PEER" container encapsulate --repo "$REPO" bench/v1 "oci:$W/out-peer" ;;
  esac
}
bm_export_cs() {
  case $1 in
    ours) measure "export → containers-storage:" ours "$OURS" encapsulate -q --repo "$REPO" bench/v1 "${CS}localhost/bench:ours$RUN" ;;
    peer) measure "export → containers-storage:" peer "$PEER" container encapsulate --repo "$REPO" bench/v1 "${CS}localhost/bench:peer$RUN" ;;
  esac
}
# bm_unencap TOOL LABEL IMGREF: unencapsulate into a fresh repo.
bm_unencap() {
  local r="$W/r-$1"; fresh "$r"
  case $1 in
    ours) measure "unencapsulate $2 → fresh repo" ours "$OURS" unencapsulate -q --repo "$r" "ostree-unverified-image:$3" ;;
    peer) measure "unencapsulate $2 → fresh repo" peer "${PEER_RUN[@]}" container unencapsulate --repo "$r" "ostree-unverified-image:$3" ;;
  esac
}
bm_pull() {
  local r="$W/r-$1"; fresh "$r"
  case $1 in
    ours) measure "image pull $2 → fresh repo" ours "$OURS" image pull -q "$r" "ostree-unverified-image:$3" ;;
    peer) measure "image pull $2 → fresh repo" peer "${PEER_RUN[@]}" container image pull "$r" "ostree-unverified-image:$3" ;;
  esac
}
# bm_derived TOOL LABEL BASE DERIVED: pull DERIVED into a repo that holds BASE; note bytes read.
bm_derived() {
  local r="$W/r-$1" name="image pull derived over present base ($2)"; fresh "$r"
  case $1 in
    ours)
      "$NS" "$OURS" image pull -q "$r" "ostree-unverified-image:$3" >/dev/null
      measure "$name" ours "$OURS" image pull --json "$r" "ostree-unverified-image:$4"
      note "$name" ours fetched "$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["bytes_to_fetch"], sum(l["action"]=="fetched" for l in r["layers"]), len(r["layers"]), r["read_via"])' "$W/last.out")" ;;
    peer)
      "$NS" "${PEER_RUN[@]}" container image pull "$r" "ostree-unverified-image:$3" >/dev/null 2>"$W/cmd.err" ||
        { printf '%s\tpeer\tFAIL\tbase: %s\n' "$name" "$(err_line "$W/cmd.err")" >> "$TIMES"; return 1; }
      measure "$name" peer "${PEER_RUN[@]}" container image pull "$r" "ostree-unverified-image:$4" || return 1
      note "$name" peer summary "$(cat "$W/last.out" "$W/cmd.err" | grep -m1 'layers needed' || true)" ;;
  esac
}
bm_deploy() {
  local s="$W/sysroot-$1" img="ostree-unverified-image:oci:$W/img-derived"
  new_sysroot "$s"
  case $1 in
    ours) measure "deploy derived image (oci:) → fresh sysroot" ours "$OURS" image deploy --sysroot "$s" --stateroot bench --imgref "$img" ;;
    peer) measure "deploy derived image (oci:) → fresh sysroot" peer "$PEER" container image deploy --sysroot "$s" --stateroot bench --imgref "$img" ;;
  esac
  local rc=$?; drop_sysroot "$s"; return $rc
}
# Synthetic corpus at size MB: export to oci: and unencapsulate our image of it.
bm_synth_export() {
  rm -rf "$W/out-$1"
  case $1 in
    ours) measure "synthetic $2 MiB: export → oci: (gzip)" ours "$OURS" encapsulate -q --repo "$REPO" "bench/synth-$2" "oci:$W/out-ours" ;;
    peer) measure "synthetic $2 MiB: export → oci: (gzip)" peer "$PEER" container encapsulate --repo "$REPO" "bench/synth-$2" "oci:$W/out-peer" ;;
  esac
}
bm_synth_unencap() {
  local r="$W/r-$1"; fresh "$r"
  case $1 in
    ours) measure "synthetic $2 MiB: unencapsulate oci: → fresh repo" ours "$OURS" unencapsulate -q --repo "$r" "ostree-unverified-image:oci:$W/img-synth-$2" ;;
    peer) measure "synthetic $2 MiB: unencapsulate oci: → fresh repo" peer "$PEER" container unencapsulate --repo "$r" "ostree-unverified-image:oci:$W/img-synth-$2" ;;
  esac
}
floors() { # LABEL TREE
  measure "floor $1: tar | sha256sum" floor bash -c "tar -C '$2' -cf - . | sha256sum"
  measure "floor $1: tar | gzip -6" floor bash -c "tar -C '$2' -cf - . | gzip -6 | wc -c"
  rm -rf "$W/r-floor"; ostree init --repo="$W/r-floor" --mode=bare
  measure "floor $1: ostree commit" floor ostree commit --repo="$W/r-floor" --branch=f --tree=dir="$2"
  rm -rf "$W/r-floor"
}

# Inputs every run reads: both tools' oci: images of v1 (and of the synthetic trees).
prepare_inputs() {
  rm -rf "$W/img-"*   # skopeo copy to an existing oci: layout would add a second manifest
  "$NS" "$OURS" encapsulate -q --repo "$REPO" bench/v1 "oci:$W/img-ours" >/dev/null
  [ -n "${PEER:-}" ] && "$NS" "$PEER" container encapsulate --repo "$REPO" bench/v1 "oci:$W/img-peer" >/dev/null
  local mb
  for mb in $SYNTH_SIZES; do
    "$NS" "$OURS" encapsulate -q --repo "$REPO" "bench/synth-$mb" "oci:$W/img-synth-$mb" >/dev/null
  done
  derived_image
  note "derived image" any layers "$(python3 "$here/lib/benchtool.py" tail-bytes "$W/img-base-cs" "$W/img-derived") $(python3 "$here/lib/benchtool.py" layers "$W/img-derived")"
}

one_run() {
  both bm_export_oci
  rm -rf "$W/out-ours-zstd"
  measure "export → oci: (zstd)" ours "$OURS" encapsulate -q --compression zstd --repo "$REPO" bench/v1 "oci:$W/out-ours-zstd"
  both bm_export_cs
  PEER_RUN=("$PEER")
  both bm_unencap "oci: (our image)" "oci:$W/img-ours"
  [ -n "${PEER:-}" ] && both bm_unencap "oci: (peer's image)" "oci:$W/img-peer"
  both bm_pull "oci:" "oci:$W/img-ours"
  both bm_derived "oci:" "oci:$W/img-base-cs" "oci:$W/img-derived"
  PEER_RUN=(env "PATH=$NEWSKOPEO:$PATH" "$PEER")
  both bm_unencap "containers-storage:" "${CS}localhost/bench-base:1"
  both bm_pull "containers-storage:" "${CS}localhost/bench-base:1"
  both bm_derived "containers-storage:" "${CS}localhost/bench-base:1" "${CS}localhost/bench-derived:1"
  PEER_RUN=("$PEER")
  both bm_update
  both bm_deploy
  [ $SMOKE = 1 ] || floors "(corpus)" "$W/tree"
  local mb
  for mb in $SYNTH_SIZES; do
    both bm_synth_export "$mb"
    both bm_synth_unencap "$mb"
    [ $SMOKE = 1 ] || floors "(synthetic $mb MiB)" "$W/synth-$mb"
  done
}
