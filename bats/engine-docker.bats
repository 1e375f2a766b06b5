# The engine controllers against a real Docker (cli.md §9.2): the full controller set, started
# implicitly by `rdd set running=true`; the "VM" is the limactl stand-in, which forwards the
# instance Docker socket to this machine's Docker. Container names, images and volumes carry
# this file's label and are removed at the end. The logs, Docker-context and `rdd run`
# scenarios live in their own file.

load helpers/rdd

setup_file() {
  rdd_setup_file
  rdd svc delete --timeout=120s
  rdd set --timeout=300s running=true
  NS="$(rdd_jsonpath app/app .spec.namespace)"
  export NS
  # R-ENG-S13: from `rdd svc paths`, in setup, not when the file is loaded.
  DOCKER_HOST="unix://$(rdd svc paths docker_socket)"
  export DOCKER_HOST
  IMAGE="rdd-bats/$RDD_INSTANCE:busybox"
  export IMAGE
  rdd_test_image "$IMAGE" >/dev/null
}

teardown_file() { rdd_teardown_file; }

LABEL_ARGS=()
setup() { LABEL_ARGS=(--label "$(rdd_docker_label)"); }

# A running container of the test image named after NAME (rdd_docker_name); prints its full ID.
run_container() {
  local name
  name="$(rdd_docker_name "$1")"
  shift
  docker run -d --name "$name" "${LABEL_ARGS[@]}" "$@" "$IMAGE" sleep 600
}

ctr() { rdd_jsonpath "container/$1" "$2" -n "$NS"; }

wait_mirror() { try --max 60 --delay 0.5 rdd ctl get container "$1" -n "$NS"; }

wait_status() {
  try --max 60 --delay 0.5 bash -c "[ \"\$(rdd ctl get container $1 -n $NS -o jsonpath={.status.status})\" = $2 ]"
}

# act ID ACTION: annotate and wait until the controller consumed the annotation.
act() {
  rdd ctl annotate container "$1" -n "$NS" --overwrite "containers.rancherdesktop.io/action=$2"
  try --max 60 --delay 0.5 bash -c "[ -z \"\$(rdd ctl get container $1 -n $NS -o jsonpath='{.metadata.annotations.containers\.rancherdesktop\.io/action}')\" ]"
}

@test "ContainerNamespace moby exists" {
  try --max 20 --delay 0.5 rdd ctl get containernamespace moby -n "$NS"
}

@test "docker run creates Container resource with status=running" {
  id="$(run_container test-lifecycle)"
  echo "$id" >"$BATS_FILE_TMPDIR/lifecycle"
  wait_mirror "$id"
  wait_status "$id" running
  assert_equal "$(ctr "$id" .status.name)" "$(rdd_docker_name test-lifecycle)"
  assert_equal "$(ctr "$id" .status.lastAction)" ""
}

@test "docker stop updates Container status to exited" {
  id="$(cat "$BATS_FILE_TMPDIR/lifecycle")"
  docker stop -t 1 "$id"
  wait_status "$id" exited
}

@test "docker rm deletes Container resource" {
  id="$(cat "$BATS_FILE_TMPDIR/lifecycle")"
  docker rm "$id"
  try --max 60 --delay 0.5 bash -c "! rdd ctl get container $id -n $NS 2>/dev/null"
}

@test "ports mirror with and without host bindings" {
  plain="$(run_container ports-plain --expose 80)"
  bound="$(run_container ports-bound -p 80)"
  wait_mirror "$plain"
  wait_mirror "$bound"
  assert_equal "$(ctr "$plain" '.status.ports[?(@.name=="80/tcp")].name')" "80/tcp"
  assert_equal "$(ctr "$plain" '.status.ports[?(@.name=="80/tcp")].bindings')" ""
  run ctr "$bound" '.status.ports[?(@.name=="80/tcp")].bindings[0].hostPort'
  assert_regex "$output" '^[0-9]+$'
  docker rm -f "$plain" "$bound"
}

@test "deleting Container resource removes Docker container" {
  id="$(run_container delete-me)"
  wait_mirror "$id"
  rdd ctl delete container "$id" -n "$NS" --timeout=60s
  run docker inspect "$id"
  assert_failure
}

@test "stop action stops a running container" {
  id="$(run_container actions)"
  echo "$id" >"$BATS_FILE_TMPDIR/actions"
  wait_status "$id" running
  act "$id" stop
  wait_status "$id" exited
  assert_equal "$(ctr "$id" .status.lastAction.action)=$(ctr "$id" .status.lastAction.state)" "stop=Succeeded"
}

@test "start action restarts a stopped container" {
  id="$(cat "$BATS_FILE_TMPDIR/actions")"
  act "$id" start
  wait_status "$id" running
  assert_equal "$(ctr "$id" .status.lastAction.action)=$(ctr "$id" .status.lastAction.state)" "start=Succeeded"
}

@test "pause and unpause actions toggle a running container" {
  id="$(cat "$BATS_FILE_TMPDIR/actions")"
  act "$id" pause
  wait_status "$id" paused
  assert_equal "$(ctr "$id" .status.lastAction.action)=$(ctr "$id" .status.lastAction.state)" "pause=Succeeded"
  act "$id" unpause
  wait_status "$id" running
  assert_equal "$(ctr "$id" .status.lastAction.action)=$(ctr "$id" .status.lastAction.state)" "unpause=Succeeded"
}

@test "pause action on a stopped container records failure" {
  id="$(cat "$BATS_FILE_TMPDIR/actions")"
  docker stop -t 1 "$id"
  wait_status "$id" exited
  act "$id" pause
  try --max 30 --delay 0.5 bash -c "[ \"\$(rdd ctl get container $id -n $NS -o jsonpath={.status.lastAction.action})\" = pause ]"
  assert_equal "$(ctr "$id" .status.lastAction.state)" "Failed"
  run ctr "$id" .status.lastAction.error
  assert_output --partial "not running"
}

@test "unpause action on a stopped container records failure" {
  id="$(cat "$BATS_FILE_TMPDIR/actions")"
  act "$id" unpause
  try --max 30 --delay 0.5 bash -c "[ \"\$(rdd ctl get container $id -n $NS -o jsonpath={.status.lastAction.action})\" = unpause ]"
  assert_equal "$(ctr "$id" .status.lastAction.state)" "Failed"
  run ctr "$id" .status.lastAction.error
  assert_output --partial "not running"
}

@test "invalid action annotation is rejected by the webhook" {
  id="$(run_container invalid-action)"
  wait_mirror "$id"
  run rdd ctl annotate container "$id" -n "$NS" containers.rancherdesktop.io/action=bogus
  assert_failure
  assert_output --partial "invalid"
  assert_equal "$(ctr "$id" .status.lastAction)" ""
  docker rm -f "$id"
}

@test "action annotation on create is rejected by the webhook" {
  run rdd ctl apply -f - <<YAML
apiVersion: containers.rancherdesktop.io/v1alpha1
kind: Container
metadata:
  name: created-with-action
  namespace: $NS
  annotations:
    containers.rancherdesktop.io/action: start
YAML
  assert_failure
  assert_output --partial "not allowed on create"
}

@test "restart action restarts a running container" {
  id="$(cat "$BATS_FILE_TMPDIR/actions")"
  docker start "$id"
  wait_status "$id" running
  before="$(docker inspect -f '{{.State.StartedAt}}' "$id")"
  act "$id" restart
  try --max 30 --delay 0.5 bash -c "[ \"\$(rdd ctl get container $id -n $NS -o jsonpath={.status.lastAction.action})\" = restart ]"
  assert_equal "$(ctr "$id" .status.lastAction.state)" "Succeeded"
  assert_not_equal "$(docker inspect -f '{{.State.StartedAt}}' "$id")" "$before"
}

@test "lastAction survives a direct docker stop" {
  id="$(cat "$BATS_FILE_TMPDIR/actions")"
  act "$id" stop
  wait_status "$id" exited
  act "$id" start
  wait_status "$id" running
  assert_equal "$(ctr "$id" .status.lastAction.action)=$(ctr "$id" .status.lastAction.state)" "start=Succeeded"
  docker stop -t 1 "$id"
  wait_status "$id" exited
  assert_equal "$(ctr "$id" .status.lastAction.action)=$(ctr "$id" .status.lastAction.state)" "start=Succeeded"
}

@test "lastAction timestamps advance across consecutive actions" {
  id="$(cat "$BATS_FILE_TMPDIR/actions")"
  act "$id" start
  wait_status "$id" running
  observed="$(ctr "$id" .status.lastAction.observedAt)"
  completed="$(ctr "$id" .status.lastAction.completedAt)"
  sleep 1
  act "$id" stop
  wait_status "$id" exited
  assert_not_equal "$(ctr "$id" .status.lastAction.observedAt)" "$observed"
  assert_not_equal "$(ctr "$id" .status.lastAction.completedAt)" "$completed"
  docker rm -f "$id"
}

@test "stopping VM removes all mirror resources" {
  run_container left-running >/dev/null
  run rdd set --timeout=300s running=false
  assert_success
  for kind in containers images volumes containernamespaces; do
    run rdd ctl get "$kind" -n "$NS" -o name
    assert_success
    assert_output ""
  done
  DOCKER_HOST="$RDD_HOST_DOCKER" docker rm -f "$(rdd_docker_name left-running)"
}

@test "rdd set running=false returns promptly when already stopped" {
  run rdd set --timeout=10s running=false
  assert_success
}

@test "VM start recreates ContainerNamespace/moby after cleanup" {
  rdd set --timeout=300s running=true
  try --max 20 --delay 0.5 rdd ctl get containernamespace moby -n "$NS"
}

@test "R-ENG-D2: deleting ContainerNamespace/moby completes without a finalizer hang" {
  uid="$(rdd_jsonpath containernamespace/moby .metadata.uid -n "$NS")"
  run timeout 10 rdd ctl delete containernamespace moby -n "$NS" --timeout=10s
  assert_success
  # Deleted promptly, then recreated by the engine session (a new object).
  try --max 20 --delay 0.5 bash -c "u=\$(rdd ctl get containernamespace moby -n $NS -o jsonpath={.metadata.uid}) && [ -n \"\$u\" ] && [ \"\$u\" != $uid ]"
}

@test "R-ENG-D7: containerd backend reports ContainerEngineReady=NotApplicable and skips mirroring" {
  rdd set --timeout=300s running=false
  run rdd set --timeout=300s containerEngine.name=containerd running=true
  assert_success
  assert_equal "$(rdd_jsonpath app/app '.status.conditions[?(@.type=="ContainerEngineReady")].reason')" "NotApplicable"
  for kind in containers images volumes containernamespaces; do
    run rdd ctl get "$kind" -n "$NS" -o name
    assert_output ""
  done
  rdd set --timeout=300s running=false containerEngine.name=moby
}
