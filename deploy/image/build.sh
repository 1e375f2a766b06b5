#!/bin/sh
# Build the rdd image offline from the workspace (see Dockerfile).
#
#   deploy/image/build.sh [-t TAG] [--profile release|debug] [--no-build] [-- docker build args]
#
# --no-build stages binaries already in $CARGO_TARGET_DIR (default <repo>/target) instead of
# running cargo. The binaries are dynamically linked against the build host's glibc; its
# libraries (as `ldd` lists them) are copied along, so the image needs nothing else.
set -eu
here=$(cd "$(dirname "$0")" && pwd)
repo=$(cd "$here/../.." && pwd)
tag=ghcr.io/rancher-sandbox/rdd:0.1.0
profile=release
build=1
while [ $# -gt 0 ]; do
  case "$1" in
    -t) tag=$2; shift 2 ;;
    --profile) profile=$2; shift 2 ;;
    --no-build) build=0; shift ;;
    --) shift; break ;;
    *) echo "build.sh: unknown argument $1" >&2; exit 2 ;;
  esac
done
bins="docker-gateway app-controller limavm-controller container-controller image-controller volume-controller"
target=${CARGO_TARGET_DIR:-$repo/target}
if [ "$build" = 1 ]; then
  flag=""; [ "$profile" = release ] && flag=--release
  (cd "$repo" && cargo build --offline --locked $flag $(for b in $bins; do printf -- '--bin %s ' "$b"; done))
fi
ctx=$(mktemp -d)
trap 'rm -rf "$ctx"' EXIT
root=$ctx/rootfs
mkdir -p "$root/usr/local/bin" "$root/tmp" "$root/etc/ssl/certs"
chmod 1777 "$root/tmp"
for b in $bins; do
  src=$target/$profile/$b
  [ -x "$src" ] || { echo "build.sh: $src missing (build it, or drop --no-build)" >&2; exit 1; }
  cp "$src" "$root/usr/local/bin/$b"
  # Every library the dynamic loader resolves, and the loader itself, at the same path.
  ldd "$src" | awk '/=> \// {print $3} /^\t\/[^ ]+ \(/ {print $1}' | while read -r lib; do
    mkdir -p "$root$(dirname "$lib")"
    cp -L "$lib" "$root$lib"
  done
done
[ -f /etc/ssl/certs/ca-certificates.crt ] && cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
printf 'root:x:0:0:root:/tmp:/nonexistent\nnonroot:x:65532:65532:nonroot:/tmp:/nonexistent\n' > "$root/etc/passwd"
printf 'root:x:0:\nnonroot:x:65532:\n' > "$root/etc/group"
cp "$here/Dockerfile" "$ctx/Dockerfile"
docker build --pull=false -t "$tag" "$@" "$ctx"
