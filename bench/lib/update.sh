# bench/lib/update.sh: v1 -> v2 update sizes (sourced by bench/run.sh).
#   update_floor     gzipped bytes of the files v2 added or changed (what any update must carry)
#   update_table     per layer budget: v1 and v2 images, v2 with and without the previous
#                    build's layout; bytes of v2's layers that v1 lacks (what a pull fetches)
#   bm_update TOOL   timed `image pull` of v2 (64 layers or the last budget, prior layout)
#                    into a repo holding v1
U="$W/upd"
BT="python3 $here/lib/benchtool.py"

update_floor() {
  ostree diff --repo="$REPO" bench/v1 bench/v2 | awk '$1=="A"||$1=="M"{print substr($0, index($0,"/")+1)}' |
    while read -r p; do [ -d "$W/tree-v2/$p" ] && [ ! -L "$W/tree-v2/$p" ] || echo "$p"; done > "$W/changed.txt"
  local n; n=$(wc -l < "$W/changed.txt")
  local gz; gz=$(tar -C "$W/tree-v2" --no-recursion -T "$W/changed.txt" -cf - | gzip -6 | wc -c)
  note "update floor" floor files "$n"; note "update floor" floor bytes "$gz"
  phase "update floor: $n changed files, $gz bytes gzipped"
  # The floor for package-granular layers: every file of each package that changed (an /etc
  # edit counts for its owner), plus the changed files no package owns.
  $BT pkgfiles "$W/tree-v2" "$W/changed.txt" > "$W/changed-pkgs.txt" 2>"$W/changed-pkgs.err"
  note "update floor" floor pkgbytes "$(tar -C "$W/tree-v2" --no-recursion -T "$W/changed-pkgs.txt" -cf - | gzip -6 | wc -c)"
  note "update floor" floor pkgs "$(cut -d' ' -f1 "$W/changed-pkgs.err")"
}

# One (tool, budget) row: v1, v2 without and with the prior layout.
update_row() { # TOOL N
  local t=$1 n=$2 d="$U/$1-$2"
  rm -rf "$d-"*
  if [ "$t" = ours ]; then
    "$NS" "$OURS" encapsulate -q --max-layers "$n" --repo "$REPO" bench/v1 "oci:$d-v1" >/dev/null
    "$NS" "$OURS" encapsulate -q --max-layers "$n" --repo "$REPO" bench/v2 "oci:$d-v2" >/dev/null
    "$NS" "$OURS" encapsulate -q --max-layers "$n" --prior-build "oci:$d-v1" --repo "$REPO" bench/v2 "oci:$d-v2p" >/dev/null
  else
    local cm=(); [ -s "$W/cm-v1.json" ] && cm=(--contentmeta "$W/cm-v1.json")
    local cm2=(); [ -s "$W/cm-v2.json" ] && cm2=(--contentmeta "$W/cm-v2.json")
    if ! "$NS" "$PEER" peer-encapsulate --repo "$REPO" --rev bench/v1 --imgref "oci:$d-v1" --max-layers "$n" "${cm[@]}" >/dev/null 2>"$W/cmd.err" ||
       ! "$NS" "$PEER" peer-encapsulate --repo "$REPO" --rev bench/v2 --imgref "oci:$d-v2" --max-layers "$n" "${cm2[@]}" >/dev/null 2>>"$W/cmd.err"; then
      note "update $n" peer error "$(err_line "$W/cmd.err")"; return 0
    fi
    $BT manifest "$d-v1" > "$d-v1.manifest.json"
    "$NS" "$PEER" peer-encapsulate --repo "$REPO" --rev bench/v2 --imgref "oci:$d-v2p" --max-layers "$n" "${cm2[@]}" \
      --prior-manifest "$d-v1.manifest.json" >/dev/null 2>"$W/cmd.err" || { note "update $n" peer error-prior "$(err_line "$W/cmd.err")"; }
  fi
  note "update $n" "$t" v1 "$($BT layers "$d-v1")"
  note "update $n" "$t" noprior "$($BT newbytes "$d-v1" "$d-v2") $($BT layers "$d-v2")"
  [ -d "$d-v2p" ] && note "update $n" "$t" prior "$($BT newbytes "$d-v1" "$d-v2p") $($BT layers "$d-v2p")"
  return 0
}

update_table() {
  mkdir -p "$U"
  update_floor
  if [ -n "${PEER:-}" ]; then
    $BT contentmeta "$REPO" bench/v1 "$W/tree" > "$W/cm-v1.json"
    $BT contentmeta "$REPO" bench/v2 "$W/tree-v2" > "$W/cm-v2.json"
    # The peer's CLI as shipped (no content metadata, no layer budget): for reference.
    rm -rf "$U/peer-cli-"*
    "$NS" "$PEER" container encapsulate --repo "$REPO" bench/v1 "oci:$U/peer-cli-v1" >/dev/null
    "$NS" "$PEER" container encapsulate --repo "$REPO" bench/v2 "oci:$U/peer-cli-v2" >/dev/null
    note "update cli" peer noprior "$($BT newbytes "$U/peer-cli-v1" "$U/peer-cli-v2") $($BT layers "$U/peer-cli-v2")"
  fi
  local n
  for n in $BUDGETS; do
    phase "update sizes, budget $n"
    update_row ours "$n"
    [ -n "${PEER:-}" ] && update_row peer "$n"
  done
  return 0
}

bm_update() {
  local n=64; case " $BUDGETS " in *" 64 "*) ;; *) n=${BUDGETS##* } ;; esac
  local t=$1 name="update v1→v2: image pull (≤ $n layers, prior layout)" d="$U/$1-$n" r="$W/r-$1"
  [ -d "$d-v2p" ] || return 0
  fresh "$r"
  if [ "$t" = ours ]; then
    "$NS" "$OURS" image pull -q "$r" "ostree-unverified-image:oci:$d-v1" >/dev/null
    measure "$name" ours "$OURS" image pull --json "$r" "ostree-unverified-image:oci:$d-v2p"
    note "$name" ours fetched "$(python3 -c 'import json,sys; r=json.load(open(sys.argv[1])); print(r["bytes_to_fetch"], sum(l["action"]=="fetched" for l in r["layers"]), len(r["layers"]))' "$W/last.out")"
  else
    "$NS" "$PEER" container image pull "$r" "ostree-unverified-image:oci:$d-v1" >/dev/null 2>&1 || return 0
    measure "$name" peer "$PEER" container image pull "$r" "ostree-unverified-image:oci:$d-v2p" || return 0
    note "$name" peer summary "$(cat "$W/last.out" "$W/cmd.err" | grep -m1 'layers needed' || true)"
    note "$name" peer fetched "$($BT newbytes "$d-v1" "$d-v2p") $($BT layers "$d-v2p" | cut -d' ' -f1)"
  fi
}
