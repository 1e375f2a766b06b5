# Common helper of rdd's BATS suites (cli.md §9). Every .bats file starts with
#
#   load helpers/rdd          (or ../helpers/rdd from a subdirectory)
#   setup_file()    { rdd_setup_file; …; }
#   teardown_file() { rdd_teardown_file; }
#   teardown()      { rdd_teardown; }      # optional: removes the test's Docker objects
#
# What it gives each file:
# - bats-support, bats-assert, bats-file (Debian's packages under /usr/lib/bats, or
#   RDD_BATS_LIB);
# - the binaries of the cargo build on PATH, located through RDD_BIN_DIR (default
#   ${CARGO_TARGET_DIR:-<repo>/target}/debug); a missing one fails the file at once with the
#   path it expected (R-ENG-S11);
# - a private HOME (a short mktemp directory: Unix socket paths live under it) and its own
#   RDD_INSTANCE, so files never share an instance, a Docker context or a kubeconfig; the paths
#   the tests use come from `rdd svc paths` in setup, never at load time (R-ENG-S13);
# - developer mode (RDD_DEVELOPER_MODE=true), RDD_KEEP_LOGS=1, RDD_NAMESPACE (default rdd-bats),
#   and the limactl stand-in as the limactl the limavm-controller drives (RDD_LIMACTL), with the
#   App's distro images from testkit/fixtures/images (RDD_IMAGE_BASE_URL);
# - at the end: `rdd svc delete`, any process left that this file's instance started, the Docker
#   objects labelled with the file's label, and the private HOME.

RDD_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
RDD_BATS_LIB="${RDD_BATS_LIB:-/usr/lib/bats}"

for _rdd_lib in bats-support bats-assert bats-file; do
  if [ ! -f "$RDD_BATS_LIB/$_rdd_lib/load.bash" ]; then
    echo "rdd BATS: $RDD_BATS_LIB/$_rdd_lib/load.bash is missing (apt-get install $_rdd_lib, or set RDD_BATS_LIB)" >&2
    return 1
  fi
  load "$RDD_BATS_LIB/$_rdd_lib/load.bash"
done
unset _rdd_lib

# The binaries every file needs: rdd and what `rdd svc` supervises for the controllers the
# suites enable, plus the limactl stand-in.
RDD_REQUIRED_BINARIES=(rdd docker-gateway container-controller app-controller limavm-controller limactl-standin)

rdd_bin_dir() {
  echo "${RDD_BIN_DIR:-${CARGO_TARGET_DIR:-$RDD_REPO/target}/debug}"
}

# rdd_require_binaries [NAME…]: fail with the expected paths when a binary is missing.
rdd_require_binaries() {
  local dir missing=() b
  dir="$(rdd_bin_dir)"
  [ $# -gt 0 ] || set -- "${RDD_REQUIRED_BINARIES[@]}"
  for b in "$@"; do
    [ -x "$dir/$b" ] || missing+=("$dir/$b")
  done
  if [ ${#missing[@]} -gt 0 ]; then
    echo "rdd BATS: binary not found: ${missing[*]}" >&2
    echo "rdd BATS: build them first (cargo build --workspace --bins) or point RDD_BIN_DIR at the directory holding them" >&2
    return 1
  fi
}

# The label every Docker object a file creates carries; teardown removes what has it.
rdd_docker_label() { echo "rdd-bats=$RDD_INSTANCE"; }

# rdd_docker_name NAME: a Docker object name unique to this run of this file. Docker names are
# global to the daemon, so a fixed name collides with a container of the same name that is not
# ours, or with one an interrupted earlier run left behind.
rdd_docker_name() { echo "$RDD_INSTANCE-${RDD_BATS_HOME##*.}-$1"; }

rdd_setup_file() {
  rdd_require_binaries || return 1
  local name
  name="$(basename "$BATS_TEST_FILENAME" .bats)"
  PATH="$(rdd_bin_dir):$PATH"
  export PATH
  RDD_BATS_HOME="$(mktemp -d /tmp/rdd-bats.XXXXXX)"
  export RDD_BATS_HOME
  export HOME="$RDD_BATS_HOME"
  export RDD_INSTANCE="${RDD_BATS_INSTANCE:-b${name:0:16}}"
  export RDD_DEVELOPER_MODE=true
  export RDD_KEEP_LOGS=1
  export RDD_NAMESPACE="${RDD_NAMESPACE:-rdd-bats}"
  export RDD_LIMACTL="$(rdd_bin_dir)/limactl-standin"
  export LIMACTL_STANDIN_BOOT_MS="${LIMACTL_STANDIN_BOOT_MS:-300}"
  # The App's distro images from the offline fixtures (the stand-in boots nothing).
  export RDD_IMAGE_BASE_URL="${RDD_IMAGE_BASE_URL:-file://$RDD_REPO/testkit/fixtures/images}"
  # Keep the logs of a run when asked (scripts/bats sets this); else they go with HOME.
  if [ -n "${RDD_BATS_LOG_DIR:-}" ]; then
    export RDD_LOG_DIR="$RDD_BATS_LOG_DIR/$name"
    rm -rf "$RDD_LOG_DIR"
    mkdir -p "$RDD_LOG_DIR"
  fi
  unset KUBECONFIG DOCKER_HOST DOCKER_CONTEXT
  export DOCKER_CONFIG="$HOME/.docker"
  mkdir -p "$DOCKER_CONFIG"
  # The real Docker, for the tests' own docker calls; DOCKER_HOST is switched to the instance's
  # socket by the files that talk to the instance engine.
  RDD_HOST_DOCKER="${RDD_HOST_DOCKER:-unix:///var/run/docker.sock}"
  export RDD_HOST_DOCKER
  # What an earlier, interrupted run of this file left behind carries this file's label: it is
  # ours to remove, and nothing else is touched.
  rdd_remove_docker_objects
}

# Processes this file's instance started and that outlived `rdd svc delete` (a test that
# killed the supervisor, a host agent orphaned on purpose): one of the build's binaries running
# with this file's private HOME in its environment, ended by pid.
rdd_kill_leftovers() {
  local p exe bin
  [ -n "${RDD_BATS_HOME:-}" ] || return 0
  bin="$(rdd_bin_dir)"
  for p in /proc/[0-9]*; do
    exe="$(readlink "$p/exe" 2>/dev/null)" || continue
    case "$exe" in "$bin"/*) ;; *) continue ;; esac
    if tr '\0' '\n' <"$p/environ" 2>/dev/null | grep -qx "HOME=$RDD_BATS_HOME"; then
      kill -9 "${p#/proc/}" 2>/dev/null || true
    fi
  done
}

rdd_remove_docker_objects() {
  local label
  label="$(rdd_docker_label)"
  DOCKER_HOST="$RDD_HOST_DOCKER" docker ps -aq --filter "label=$label" | xargs -r env DOCKER_HOST="$RDD_HOST_DOCKER" docker rm -f >/dev/null 2>&1 || true
  DOCKER_HOST="$RDD_HOST_DOCKER" docker volume ls -q --filter "label=$label" | xargs -r env DOCKER_HOST="$RDD_HOST_DOCKER" docker volume rm -f >/dev/null 2>&1 || true
  DOCKER_HOST="$RDD_HOST_DOCKER" docker images -q --filter "label=$label" | sort -u | xargs -r env DOCKER_HOST="$RDD_HOST_DOCKER" docker rmi -f >/dev/null 2>&1 || true
}

rdd_teardown() {
  rdd_remove_docker_objects
}

rdd_teardown_file() {
  if [ -n "${RDD_BATS_HOME:-}" ]; then
    rdd svc delete --timeout=60s >/dev/null 2>&1 || true
    rdd_kill_leftovers
    rdd_remove_docker_objects
    if [ -z "${RDD_BATS_KEEP_HOME:-}" ]; then
      rm -rf "$RDD_BATS_HOME"
    else
      echo "# kept $RDD_BATS_HOME" >&3
    fi
  fi
}

# setup_rdd_control_plane [SPEC]: a fresh control plane with the given controllers (default *).
setup_rdd_control_plane() {
  rdd svc delete --timeout=120s
  rdd svc create --controllers="${1:-*}"
  rdd svc start
}

# try [--max N] [--delay S] COMMAND…: run COMMAND until it succeeds (bats `run` semantics:
# $status and $output are those of the last attempt).
try() {
  local max=30 delay=1
  while [ $# -gt 0 ]; do
    case "$1" in
      --max) max="$2"; shift 2 ;;
      --delay) delay="$2"; shift 2 ;;
      *) break ;;
    esac
  done
  local i
  for ((i = 1; i <= max; i++)); do
    run "$@"
    [ "$status" -eq 0 ] && return 0
    [ "$i" -lt "$max" ] && sleep "$delay"
  done
  return 1
}

# rdd_jsonpath KIND/NAME EXPR [kubectl flags…]: one field of an object through `rdd ctl`.
rdd_jsonpath() {
  local obj="$1" expr="$2"
  shift 2
  rdd ctl get "$obj" "$@" -o "jsonpath={$expr}"
}

# rdd_test_image TAG: an image from Debian's busybox-static (no registry needed), labelled so
# the file's teardown removes it. Prints the image ID.
rdd_test_image() {
  local tag="$1" busybox=/bin/busybox
  [ -x "$busybox" ] || { echo "busybox-static is required (apt-get install busybox-static)" >&2; return 1; }
  local ctx a
  ctx="$(mktemp -d)"
  mkdir -p "$ctx/bin"
  cp "$busybox" "$ctx/bin/busybox"
  for a in sh echo sleep cat printenv true seq; do ln -s busybox "$ctx/bin/$a"; done
  tar -C "$ctx" -c bin | DOCKER_HOST="$RDD_HOST_DOCKER" docker import \
    --change "LABEL $(rdd_docker_label)" \
    --change 'ENV PATH=/bin' \
    --change 'CMD ["/bin/sh"]' - "$tag" >/dev/null
  rm -rf "$ctx"
  DOCKER_HOST="$RDD_HOST_DOCKER" docker image inspect -f '{{.Id}}' "$tag"
}
