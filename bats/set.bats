# `rdd set` (cli.md §5, §9.3). Control plane `app` only: no LimaVM or engine controller, so
# `Settled` never appears and every write uses --wait=false.

load helpers/rdd

setup_file() {
  rdd_setup_file
  setup_rdd_control_plane app
}

teardown_file() { rdd_teardown_file; }

app_field() { rdd_jsonpath app/app "$1"; }

delete_app() { rdd ctl delete app app --ignore-not-found --wait=true; }

@test "rdd set --help shows usage and available properties" {
  run rdd set --help
  assert_success
  assert_output --partial "PROPERTY=VALUE"
  assert_output --partial "Available properties:"
  assert_output --partial "running"
  assert_output --partial "containerEngine.name"
  assert_output --partial "kubernetes.enabled"
  assert_output --partial "kubernetes.version"
  refute_output --partial "namespace"
}

@test "rdd set rejects invalid arguments" {
  delete_app
  run rdd set --wait=false namespace=test
  assert_failure 1
  assert_output --partial "unknown property"
  assert_output --partial "valid properties"

  run rdd set --wait=false nonexistent=value
  assert_failure 1
  assert_output --partial "unknown property"
  assert_output --partial "valid properties"

  run rdd set --wait=false running
  assert_failure 1
  assert_output --partial "expected PROPERTY=VALUE"

  run rdd set --wait=false containerEngine=moby
  assert_failure 1
  assert_output --partial "is an object"
  assert_output --partial "containerEngine.name"

  run rdd set --wait=false =value
  assert_failure 1
  assert_output --partial "property name must not be empty"

  for v in yes ""; do
    run rdd set --wait=false "running=$v"
    assert_failure 1
    assert_output --partial "expected boolean"
  done

  for v in docker ""; do
    run rdd set --wait=false "containerEngine.name=$v"
    assert_failure 1
    assert_output --partial "valid values"
    assert_output --partial "moby"
    assert_output --partial "containerd"
  done

  # Nothing was written by any of them.
  run rdd ctl get app app
  assert_failure
}

@test "rdd set reports each bad input in one line" {
  run rdd set --wait=false running=maybe
  assert_failure 1
  assert_equal "${#lines[@]}" 1
}

@test "rdd set creates App with defaults" {
  delete_app
  run rdd set --wait=false running=false
  assert_success
  assert_equal "$(app_field .spec.running)" "false"
  assert_equal "$(app_field .spec.containerEngine.name)" "moby"
}

@test "rdd set updates App and preserves unchanged fields" {
  delete_app
  rdd set --wait=false running=false containerEngine.name=containerd
  rdd set --wait=false running=true
  assert_equal "$(app_field .spec.running)" "true"
  assert_equal "$(app_field .spec.containerEngine.name)" "containerd"
  rdd set --wait=false containerEngine.name=moby
  assert_equal "$(app_field .spec.running)" "true"
  assert_equal "$(app_field .spec.containerEngine.name)" "moby"
}

@test "rdd set clears string field with empty value" {
  delete_app
  rdd set --wait=false running=false kubernetes.enabled=true kubernetes.version=1.32.0
  assert_equal "$(app_field .spec.kubernetes.version)" "1.32.0"
  rdd set --wait=false kubernetes.enabled=false kubernetes.version=
  assert_equal "$(app_field .spec.kubernetes.version)" ""
  assert_equal "$(app_field .spec.kubernetes.enabled)" "false"
}

@test "rdd set --dry-run validates without persisting" {
  delete_app
  rdd set --wait=false running=false containerEngine.name=moby
  run rdd set --dry-run containerEngine.name=containerd
  assert_success
  assert_equal "$(app_field .spec.containerEngine.name)" "moby"
}

@test "rdd set --dry-run rejects invalid enum value" {
  run rdd set --dry-run containerEngine.name=docker
  assert_failure 1
  assert_output --partial "valid values"
}

@test "rdd set creates App with specified values" {
  delete_app
  rdd set --wait=false running=false containerEngine.name=containerd
  assert_equal "$(app_field .spec.containerEngine.name)" "containerd"
}

@test "rdd set --dry-run creates App if absent" {
  delete_app
  run rdd set --dry-run running=true
  assert_success
  run rdd ctl get app app
  assert_success
  # Created with the defaults only: the dry-run value was not persisted.
  assert_equal "$(app_field .spec.running)" "false"
}

@test "rdd set refuses an unsupported Kubernetes version with exit 3 and writes nothing" {
  delete_app
  run rdd set --wait=false running=false kubernetes.enabled=true kubernetes.version=1.31.99
  assert_failure 3
  assert_output --partial "not supported"
  run rdd ctl get app app
  assert_failure
}

@test "rdd set returns as soon as the write is accepted with --wait=false" {
  delete_app
  # No controller here writes Settled: a waiting set could never return.
  run timeout 30 rdd set --wait=false running=true
  assert_success
  run timeout 30 rdd set --timeout=2s running=false
  assert_failure 4
  assert_output --partial "context deadline exceeded"
}
