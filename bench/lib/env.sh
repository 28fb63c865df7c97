# bench/lib/env.sh: private container configuration, the mount namespace, and measure().
# Sourced by bench/run.sh; needs W (work dir) and STORE set.

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

TIMES="$W/times.tsv"   # name  tool  size-class  seconds  max-RSS-KiB   (or FAIL and the reason)
BYTES="$W/bytes.tsv"   # name  tool  key  value
# measure NAME TOOL CMD...: one timed run in the namespace; stdout kept in $W/last.out.
# Ours must work (the run stops); a failing peer is recorded with the error's last line.
measure() {
  local name=$1 tool=$2; shift 2
  if ! /usr/bin/time -f '%e %M' -o "$W/time.out" "$NS" "$@" >"$W/last.out" 2>"$W/cmd.err"; then
    echo "benchmark '$name' ($tool) failed:" >&2; tail -5 "$W/cmd.err" >&2
    [ "$tool" = ours ] && exit 1
    printf '%s\t%s\tFAIL\t%s\n' "$name" "$tool" "$(err_line "$W/cmd.err")" >> "$TIMES"
    return 1
  fi
  printf '%s\t%s\t%s\n' "$name" "$tool" "$(tail -1 "$W/time.out" | tr ' ' '\t')" >> "$TIMES"
}
# The line of an error output that says what went wrong (a panic's message, or the last line).
err_line() {
  { grep -m1 -A1 "panicked at" "$1" | tail -n +2 | tr '\n' ' '; grep -v -e '^Command exited' -e '^note:' -e '^ *[0-9]*:' "$1" | grep -m1 -i 'error' || tail -1 "$1"; } |
    head -1 | tr '\t' ' ' | cut -c1-200
}
note() { printf '%s\t%s\t%s\t%s\n' "$1" "$2" "$3" "$4" >> "$BYTES"; }   # name tool key value
# A fresh bare repo. The smoke run skips fsync (it checks that the script works, not speed).
fresh() {
  rm -rf "$1"; ostree init --repo="$1" --mode=bare
  [ "$SMOKE" = 0 ] || ostree config --repo="$1" set core.fsync false
}
unmount_under() { awk -v p="$1" '$2 ~ "^"p {print $2}' /proc/self/mounts | sort -r | xargs -r -n1 umount; }
# A throwaway sysroot with stateroot "bench"; deployments are immutable (chattr +i): undo first.
drop_sysroot() {
  [ -d "$1" ] || return 0
  find "$1/ostree/deploy" -mindepth 3 -maxdepth 3 -type d -exec chattr -i {} + 2>/dev/null || true
  rm -rf "$1"
}
new_sysroot() {
  drop_sysroot "$1"; mkdir -p "$1"
  ostree admin init-fs --modern "$1" >/dev/null 2>&1 || ostree admin init-fs "$1" >/dev/null
  ostree admin os-init --sysroot="$1" bench >/dev/null
  [ "$SMOKE" = 0 ] || ostree config --repo="$1/ostree/repo" set core.fsync false
}
# The peer reads containers-storage only with a newer skopeo (image proxy >= 0.2.5).
peer_cs() { PATH="$NEWSKOPEO:$PATH" "$PEER" "$@"; }
