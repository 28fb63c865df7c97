#!/bin/bash
# install-deps.sh: installs what ostree-bridge needs on a fresh Debian 12 machine (run as root).
# Idempotent: packages already present are skipped by apt; nothing under the user's podman
# configuration (/etc/containers, ~/.config/containers) is written. Tests bring their own configs.
set -euo pipefail
PKGS=(
  # build
  pkg-config libostree-dev libglib2.0-dev libzstd-dev libssl-dev gcc
  # the real parts the tests drive
  ostree skopeo podman runc docker-registry busybox-static
  # fixtures and checks: rpm database built in tests, GPG keys, chattr, tar/zstd for comparisons
  rpm gnupg e2fsprogs tar zstd gzip systemd make time
)
missing=()
for p in "${PKGS[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi
# Debian's docker-registry package starts a system registry on :5000; the tests start their own
# on a free loopback port, so stop the packaged one where systemd runs it (ignore failures).
if command -v systemctl >/dev/null 2>&1 && systemctl is-active -q docker-registry 2>/dev/null; then
  systemctl stop docker-registry || true
fi
echo "install-deps: all present (${#PKGS[@]} packages)"
