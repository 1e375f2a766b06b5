# `rdd limavm` / `rdd lima` (cli.md §8, §9.8). Control plane `lima`; the template never boots
# (the stand-in fails its image download), a fresh namespace per test.

load ../helpers/rdd
load ../helpers/lima

setup_file() {
  rdd_setup_file
  setup_rdd_control_plane lima
}

teardown_file() { rdd_teardown_file; }

setup() {
  NS="cli-$BATS_TEST_NUMBER"
  template_configmap "$NS" test-template
}

teardown() {
  rdd ctl delete limavm --all -n "$NS" --wait=true --timeout=60s >/dev/null 2>&1 || true
  rdd ctl delete namespace "$NS" --wait=false >/dev/null 2>&1 || true
}

@test "lima create with missing ConfigMap template" {
  run rdd lima create test-vm test-missing-template -n "$NS"
  assert_failure
  assert_output --partial "denied the request"
  assert_output --partial '\"test-missing-template\" not found'
  run rdd ctl get configmap test-vm-template -n "$NS"
  assert_failure
  run rdd ctl get limavm test-vm -n "$NS"
  assert_failure
}

@test "lima create/start/stop/delete with ConfigMap template" {
  run rdd lima create test-vm test-template -n "$NS"
  assert_success
  assert_output --partial "created"
  run rdd lima start test-vm --wait=false
  assert_success
  assert_output --partial "started"
  assert_equal "$(rdd_jsonpath limavm/test-vm .spec.running -n "$NS")" "true"
  run rdd lima stop test-vm --wait=false
  assert_success
  assert_output --partial "stopped"
  assert_equal "$(rdd_jsonpath limavm/test-vm .spec.running -n "$NS")" "false"
  run rdd lima delete test-vm
  assert_success
  assert_output --partial "deleted"
  run rdd ctl get limavm test-vm -n "$NS"
  assert_failure
}

@test "lima create --start sets running=true" {
  run rdd lima create test-vm test-template -n "$NS" --start --wait=false
  assert_success
  assert_equal "$(rdd_jsonpath limavm/test-vm .spec.running -n "$NS")" "true"
}

@test "lima create with file template" {
  file="$BATS_TEST_TMPDIR/template.yaml"
  nonbootable_template >"$file"
  run rdd lima create test-vm-file "$file" -n "$NS" --dry-run
  assert_success
  run rdd ctl get configmap test-vm-file -n "$NS"
  assert_failure
  run rdd ctl get limavm test-vm-file -n "$NS"
  assert_failure

  run rdd lima create test-vm-file "$file" -n "$NS"
  assert_success
  assert_equal "$(rdd_jsonpath configmap/test-vm-file .data.template -n "$NS")" "$(cat "$file")"
  assert_equal "$(rdd_jsonpath configmap/test-vm-file '.metadata.ownerReferences[0].kind' -n "$NS")" "LimaVM"

  run rdd lima create test-vm-file "$file" -n "$NS"
  assert_failure
  assert_output --partial "already exists"

  run rdd lima delete test-vm-file
  assert_success
  try --max 20 --delay 0.5 bash -c "! rdd ctl get configmap test-vm-file -n '$NS' 2>/dev/null"
}

@test "lima create cleans up ConfigMap on LimaVM creation failure" {
  rdd lima create dup-vm test-template -n "$NS"
  other="$NS-other"
  rdd ctl create namespace "$other"
  file="$BATS_TEST_TMPDIR/template.yaml"
  nonbootable_template >"$file"
  run rdd lima create dup-vm "$file" -n "$other"
  assert_failure
  assert_output --partial "admission webhook"
  assert_output --partial "Cleaning up created ConfigMap"
  run rdd ctl get configmap dup-vm -n "$other"
  assert_failure
  rdd ctl delete namespace "$other" --wait=false
}

@test "lima create fails with non-existent file" {
  run rdd lima create test-vm /nonexistent/template.yaml -n "$NS"
  assert_failure
  assert_output --partial "failed to read template file"
}

@test "lima commands fail gracefully when VM does not exist" {
  for cmd in start stop delete shell; do
    run rdd lima "$cmd" nonexistent
    assert_failure 1
    assert_output --partial 'nonexistent\" not found in any namespace'
    assert_equal "${#lines[@]}" 1
  done
}

@test "lima restart sets running=true" {
  rdd lima create test-vm test-template -n "$NS"
  run rdd lima restart test-vm --wait=false
  assert_success
  assert_output --partial "restart requested"
  assert_equal "$(rdd_jsonpath limavm/test-vm .spec.running -n "$NS")" "true"
}

@test "lima start --timeout fails when VM cannot reach desired state" {
  rdd lima create test-vm test-template -n "$NS"
  run rdd lima start test-vm --timeout=3s
  assert_failure 4
  assert_output --partial "context deadline exceeded"
}

@test "lima create --start --timeout fails when VM cannot boot" {
  run rdd lima create test-vm test-template -n "$NS" --start --timeout=3s
  assert_failure 4
  assert_output --partial "context deadline exceeded"
}

@test "lima restart --timeout fails when VM cannot restart" {
  rdd lima create test-vm test-template -n "$NS"
  run rdd lima restart test-vm --timeout=3s
  assert_failure 4
  assert_equal "$(rdd_jsonpath limavm/test-vm .status.restartCount -n "$NS")" ""
}

@test "lima stop --timeout exits with code 4" {
  rdd lima create test-vm test-template -n "$NS" --start --wait=false
  run rdd lima stop test-vm --timeout=1ms
  assert_failure 4
}

@test "lima delete --timeout exits with code 4" {
  rdd lima create test-vm test-template -n "$NS"
  run rdd lima delete test-vm --timeout=1ms
  assert_failure 4
}

@test "lima help text is displayed" {
  run rdd lima --help
  assert_success
  for word in create start stop restart delete logs shell edit; do
    assert_output --partial "  $word"
  done
}
