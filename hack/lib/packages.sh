# shellcheck shell=bash
# Sourced by .ci/run and hack/demo.sh: install the Debian packages of hack/system-packages.txt that
# are missing. As root only; otherwise it names the command to run and returns 1.
#
# ensure_system_packages

ensure_system_packages() {
  local root list p missing=() policy=/usr/sbin/policy-rc.d made=false
  root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
  mapfile -t list < <(sed -e 's/#.*//' -e '/^[[:space:]]*$/d' "$root/hack/system-packages.txt")
  for p in "${list[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
  done
  if [ "${#missing[@]}" -eq 0 ]; then
    printf 'setup: all %s system packages present\n' "${#list[@]}" >&2
    return 0
  fi
  if [ "$(id -u)" != 0 ]; then
    printf 'setup: missing Debian packages; as root run:\n  apt-get update && apt-get install -y --no-install-recommends %s\n' \
      "${missing[*]}" >&2
    return 1
  fi
  printf 'setup: installing %s Debian packages: %s\n' "${#missing[@]}" "${missing[*]}" >&2
  # Installing nginx, haproxy, containerd or dnsmasq must not start system services on this machine.
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' >"$policy"
    chmod +x "$policy"
    made=true
  fi
  local rc=0
  DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 update -qq >&2 || rc=$?
  if [ "$rc" -eq 0 ]; then
    DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600 install -y -qq \
      --no-install-recommends "${missing[@]}" >&2 || rc=$?
  fi
  if $made; then rm -f "$policy"; fi
  return "$rc"
}
