# The engine-docker scenarios for logs, the instance's Docker context and `rdd run` (cli.md §9.2;
# controllers.md §4.14, §4.15): the full controller set started by `rdd set running=true`, the
# limactl stand-in forwarding the instance Docker socket to this machine's Docker, DOCKER_CONFIG
# isolated to the file's private HOME (rdd_setup_file).

load helpers/rdd

setup_file() {
  rdd_setup_file
  rdd svc delete --timeout=120s
  rdd set --timeout=300s running=true
  NS="$(rdd_jsonpath app/app .spec.namespace)"
  export NS
  DOCKER_HOST="unix://$(rdd svc paths docker_socket)"
  export DOCKER_HOST
  KUBECONFIG_RDD="$(rdd svc paths config)"
  export KUBECONFIG_RDD
  CONTEXT="rancher-desktop-$RDD_INSTANCE"
  export CONTEXT
  IMAGE="rdd-bats/$RDD_INSTANCE:busybox"
  export IMAGE
  rdd_test_image "$IMAGE" >/dev/null
}

teardown_file() { rdd_teardown_file; }

PYTHON="${RDD_PYTHON:-$RDD_REPO/.venv/bin/python}"

# logs ID [QUERY] [SECONDS]: the container's logs through the API server's WebSocket.
logs() {
  "$PYTHON" "$RDD_REPO/bats/helpers/ws_logs.py" "$KUBECONFIG_RDD" "/passthrough/engine/logs/$1${2:-}" "${3:-30}"
}

# start_logged NAME [docker run flags…] -- SCRIPT: a container running `sh -c SCRIPT`; prints its ID
# once its mirror exists.
start_logged() {
  local name="$1" script="$2"
  shift 2
  local id
  id="$(docker run -d --name "$(rdd_docker_name "$name")" --label "$(rdd_docker_label)" "$@" "$IMAGE" sh -c "$script")"
  try --max 60 --delay 0.5 rdd ctl get container "$id" -n "$NS" >/dev/null
  echo "$id"
}

context_dir() { echo "$DOCKER_CONFIG/contexts/meta/$(printf %s "$1" | sha256sum | cut -d' ' -f1)"; }

current_context() { "$PYTHON" -c 'import json,sys; print(json.load(open(sys.argv[1])).get("currentContext", ""))' "$DOCKER_CONFIG/config.json" 2>/dev/null || true; }

@test "docker logs for container with tty" {
  id="$(start_logged logs-tty 'echo hello; echo world; sleep 600' -t)"
  run logs "$id" "?follow=false"
  assert_success
  assert_line --index 0 $'hello\r'
  assert_line --index 1 $'world\r'
}

@test "cleanup from logs with tty test" {
  docker rm -f logs-tty
}

@test "docker logs for container without tty" {
  id="$(start_logged logs-plain 'echo hello; echo world >&2; sleep 600')"
  run logs "$id" "?follow=false"
  assert_success
  assert_line hello
  assert_line world
  refute_output --partial $'\r'
}

@test "cleanup from logs without tty test" {
  docker rm -f logs-plain
}

@test "docker log lines can be limited" {
  id="$(start_logged logs-tail 'for i in $(seq 0 9); do echo line$i; done; sleep 600')"
  run logs "$id" "?tail=5&follow=false"
  assert_success
  assert_output "$(printf 'line%s\n' 5 6 7 8 9)"
}

@test "cleanup from log lines limit test" {
  docker rm -f logs-tail
}

@test "docker log lines can disable following" {
  id="$(start_logged logs-nofollow 'echo hello; sleep 20; echo world; sleep 600')"
  SECONDS=0
  run logs "$id" "?follow=false" 10
  assert_success
  assert_output hello
  [ "$SECONDS" -lt 10 ]
  assert_equal "$(docker inspect -f '{{.State.Running}}' "$id")" true
}

@test "cleanup from log lines no follow test" {
  docker rm -f logs-nofollow
}

@test "docker logs refuses bad ids, unknown containers and bad parameters before the upgrade" {
  run logs not-hex
  assert_equal "$status" 2
  assert_output --partial "HTTP 400 Invalid container ID"
  run logs "$(printf '0%.0s' $(seq 64))"
  assert_equal "$status" 2
  assert_output --partial "HTTP 404 Container not found"
}

@test "moby engine creates Docker context for the instance" {
  meta="$(context_dir "$CONTEXT")/meta.json"
  try --max 30 --delay 0.5 test -f "$meta"
  run "$PYTHON" -c 'import json,sys; m=json.load(open(sys.argv[1])); print(m["Name"]); print(m["Endpoints"]["docker"]["Host"])' "$meta"
  assert_success
  assert_line --index 0 "$CONTEXT"
  assert_line --index 1 "$DOCKER_HOST"
}

@test "rdd run targets the instance Docker context" {
  run rdd run docker context show
  assert_success
  assert_output "$CONTEXT"
}

@test "rdd run propagates the child exit status without a spurious error line" {
  run rdd run sh -c 'exit 7'
  assert_equal "$status" 7
  refute_output --partial "level=error"
  assert_output ""
}

@test "rdd run never hands the child a KUBECONFIG that does not exist" {
  # No Kubernetes controller writes <short_dir>/kube.config here (docs/cli.md): KUBECONFIG is
  # then unset, the caller's value removed too.
  KUBECONFIG=/nonexistent/caller.yaml run rdd run sh -c 'test -z "${KUBECONFIG+x}" || test -f "$KUBECONFIG" && echo "${KUBECONFIG-unset}"'
  assert_success
  assert_output "unset"
}

@test "moby engine sets currentContext when no healthy context exists" {
  local gone
  gone="$(context_dir unreachable)"
  mkdir -p "$gone"
  printf '{"Name":"unreachable","Metadata":{},"Endpoints":{"docker":{"Host":"unix:///nonexistent/rdd-bats.sock","SkipTLSVerify":false}}}' >"$gone/meta.json"
  printf '{"currentContext":"unreachable","auths":{"registry.invalid":{}},"psFormat":"table {{.ID}}"}' >"$DOCKER_CONFIG/config.json"
  rdd set --timeout=300s running=false
  rdd set --timeout=300s running=true
  try --max 30 --delay 0.5 bash -c "[ \"\$(python3 -c 'import json,sys; print(json.load(open(sys.argv[1]))[\"currentContext\"])' $DOCKER_CONFIG/config.json)\" = $CONTEXT ]"
  # The fields rdd does not own are kept.
  run "$PYTHON" -c 'import json,sys; c=json.load(open(sys.argv[1])); print(sorted(c)); print(c["psFormat"])' "$DOCKER_CONFIG/config.json"
  assert_line --index 0 "['auths', 'currentContext', 'psFormat']"
  assert_line --index 1 "table {{.ID}}"
}

@test "stopping moby engine removes Docker context and clears currentContext" {
  rdd set --timeout=300s running=false
  try --max 30 --delay 0.5 bash -c "[ ! -d $(context_dir "$CONTEXT") ]"
  refute [ "$(current_context)" = "$CONTEXT" ]
}
