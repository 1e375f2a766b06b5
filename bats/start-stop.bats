# `rdd start`, `rdd stop` (cli.md §6, §9.4). Control plane `app` only.

load helpers/rdd

setup_file() {
  rdd_setup_file
  setup_rdd_control_plane app
}

teardown_file() { rdd_teardown_file; }

@test "rdd start --help shows usage" {
  run rdd start --help
  assert_success
  assert_output --partial "Start"
  assert_output --partial "--wait"
  assert_output --partial "--timeout"
}

@test "rdd stop --help shows usage" {
  run rdd stop --help
  assert_success
  assert_output --partial "Stop"
  assert_output --partial "--wait"
  assert_output --partial "--timeout"
}

@test "rdd stop succeeds when App is absent without creating it" {
  rdd ctl delete app app --ignore-not-found --wait=true
  run rdd stop --wait=false
  assert_success
  assert_output --partial "does not exist"
  run rdd ctl get app app
  assert_failure
}

@test "rdd start creates App with running=true" {
  rdd ctl delete app app --ignore-not-found --wait=true
  run rdd start --wait=false
  assert_success
  assert_equal "$(rdd_jsonpath app/app .spec.running)" "true"
}

@test "rdd stop patches existing App to running=false" {
  run rdd stop --wait=false
  assert_success
  assert_equal "$(rdd_jsonpath app/app .spec.running)" "false"
}

@test "rdd start takes no positional arguments" {
  run rdd start running=false
  assert_failure
  assert_equal "$(rdd_jsonpath app/app .spec.running)" "false"
}
