# LimaVM → Lima instance on disk (cli.md §9.9). Control plane `lima`; bootable template,
# `running: false`.

load ../helpers/rdd
load ../helpers/lima

NS=instance-ns

setup_file() {
  rdd_setup_file
  setup_rdd_control_plane lima
  LIMA_HOME="$(rdd svc paths lima_home)"
  export LIMA_HOME
}

teardown_file() { rdd_teardown_file; }

@test "create source template ConfigMap" {
  template_configmap "$NS" source-template "$(bootable_template)"
  run rdd_jsonpath configmap/source-template .data.template -n "$NS"
  assert_output --partial "images:"
}

@test "create LimaVM with source template" {
  limavm_manifest test-instance "$NS" source-template false | rdd ctl apply -f -
  run rdd ctl get limavm test-instance -n "$NS"
  assert_success
}

@test "wait for template ConfigMap to be created" {
  try --max 30 --delay 1 bash -c "[ -n \"\$(rdd ctl get limavm test-instance -n $NS -o jsonpath={.status.templateConfigMap})\" ]"
}

@test "wait for Created condition to be True" {
  rdd ctl wait-condition limavm/test-instance Created=True -n "$NS" --timeout=120s
}

@test "verify Lima instance directory exists" {
  assert_dir_exists "$LIMA_HOME/test-instance"
}

@test "verify Lima instance has lima.yaml file" {
  assert_file_exists "$LIMA_HOME/test-instance/lima.yaml"
}

@test "verify Created condition has correct reason" {
  assert_equal "$(limavm_condition test-instance "$NS" Created reason)" "Created"
}

@test "verify Created condition has message" {
  run limavm_condition test-instance "$NS" Created message
  assert_output --partial "Lima instance"
}

@test "delete LimaVM resource" {
  rdd lima delete test-instance --timeout=60s
}

@test "verify LimaVM is deleted" {
  run rdd ctl get limavm test-instance -n "$NS"
  assert_failure
}

@test "verify Lima instance is deleted from disk" {
  assert_dir_not_exists "$LIMA_HOME/test-instance"
}

@test "create fake leftover Lima instance" {
  mkdir -p "$LIMA_HOME/test-instance"
  : >"$LIMA_HOME/test-instance/lima.yaml"
  touch "$LIMA_HOME/test-instance/.fake-leftover"
  echo 0.0.0 >"$LIMA_HOME/test-instance/lima-version"
}

@test "create LimaVM with leftover instance present" {
  limavm_manifest test-instance "$NS" source-template false | rdd ctl apply -f -
}

@test "wait for Created after leftover cleanup" {
  rdd ctl wait-condition limavm/test-instance Created=True -n "$NS" --timeout=120s
}

@test "verify leftover was replaced with real instance" {
  assert_file_not_exists "$LIMA_HOME/test-instance/.fake-leftover"
  run cat "$LIMA_HOME/test-instance/lima.yaml"
  assert_output --partial "images:"
}

@test "cleanup LimaVM after leftover test" {
  rdd lima delete test-instance --timeout=60s
  assert_dir_not_exists "$LIMA_HOME/test-instance"
}

@test "create ConfigMap with invalid image URL" {
  template_configmap "$NS" invalid-image-source 'images:
- location: "https://invalid.example.test/nonexistent.iso"'
}

# The limavm-controller prepares the image before Created=True (controllers.md §3.2 step 14):
# a download failure deletes the instance and reports Created=False/CreateFailed naming the URL.
@test "create LimaVM with invalid image URL" {
  limavm_manifest invalid-image "$NS" invalid-image-source true | rdd ctl apply -f -
}

@test "wait for Created condition to be False" {
  rdd ctl wait-condition limavm/invalid-image Created=False -n "$NS" --timeout=30s
}

@test "verify Created condition has CreateFailed reason" {
  run limavm_condition invalid-image "$NS" Created reason
  assert_output "CreateFailed"
}

@test "verify Created condition message contains error details" {
  run limavm_condition invalid-image "$NS" Created message
  assert_output --partial "invalid.example.test"
}

@test "cleanup LimaVM with invalid image" {
  rdd lima delete invalid-image --timeout=60s
}
