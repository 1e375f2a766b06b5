# LimaVM lifecycle and the template copy (cli.md §9.10). Control plane `lima`; the template
# never boots.

load ../helpers/rdd
load ../helpers/lima

NS=lifecycle-ns

setup_file() {
  rdd_setup_file
  setup_rdd_control_plane lima
}

teardown_file() { rdd_teardown_file; }

cm() { rdd_jsonpath "configmap/test-vm-template" "$1" -n "$NS"; }

@test "create source-template ConfigMap" {
  template_configmap "$NS" source-template
}

@test "create LimaVM resource" {
  limavm_manifest test-vm "$NS" source-template false | rdd ctl apply -f -
}

@test "verify LimaVM has finalizer for cleanup" {
  run rdd_jsonpath limavm/test-vm .metadata.finalizers -n "$NS"
  assert_output --partial "rdd.rancherdesktop.io/cleanup"
}

@test "wait for template ConfigMap to be created" {
  try --max 30 --delay 1 bash -c "[ -n \"\$(rdd ctl get limavm test-vm -n $NS -o jsonpath={.status.templateConfigMap})\" ]"
}

@test "verify copied ConfigMap has correct data" {
  assert_equal "$(cm .data.template)" "$(rdd_jsonpath configmap/source-template .data.template -n "$NS")"
}

@test "verify template ConfigMap has correct label" {
  assert_equal "$(cm '.metadata.labels.lima\.rancherdesktop\.io/template-configmap')" "true"
}

@test "verify template ConfigMap has owned finalizer" {
  run cm .metadata.finalizers
  assert_output --partial "rdd.rancherdesktop.io/owned-by-LimaVM"
}

@test "verify template ConfigMap has owner reference" {
  assert_equal "$(cm '.metadata.ownerReferences[0].kind')" "LimaVM"
  assert_equal "$(cm '.metadata.ownerReferences[0].name')" "test-vm"
  assert_equal "$(cm '.metadata.ownerReferences[0].controller')" "true"
}

@test "verify LimaVM status has template ConfigMap name" {
  assert_equal "$(rdd_jsonpath limavm/test-vm .status.templateConfigMap -n "$NS")" "test-vm-template"
}

@test "template ConfigMap modification is allowed if template key exists" {
  run rdd ctl patch configmap test-vm-template -n "$NS" --type=merge \
    -p "{\"data\":{\"template\":\"images:\\n- location: https://foo.test./changed\\n\"}}"
  assert_success
  assert_equal "$(cm .data.template)" "images:
- location: https://foo.test./changed"
}

@test "template ConfigMap modification without template key is rejected" {
  before="$(cm .data.template)"
  run rdd ctl patch configmap test-vm-template -n "$NS" --type=json -p '[{"op":"remove","path":"/data/template"}]'
  assert_failure
  assert_output --partial "Forbidden"
  assert_output --partial 'template ConfigMap must have a "template" data entry'
  assert_equal "$(cm .data.template)" "$before"
}

@test "template ConfigMap modification with empty template is rejected" {
  run rdd ctl patch configmap test-vm-template -n "$NS" --type=merge -p '{"data":{"template":""}}'
  assert_failure
  assert_output --partial "Forbidden"
  assert_output --partial '"template" data cannot be empty'
}

@test "template ConfigMap label removal is rejected while owned" {
  run rdd ctl label configmap test-vm-template -n "$NS" lima.rancherdesktop.io/template-configmap-
  assert_failure
  assert_output --partial "Forbidden"
  assert_output --partial "cannot remove"
  assert_output --partial "resource is owned"
}

@test "template ConfigMap cannot be deleted independently" {
  run rdd ctl delete configmap test-vm-template -n "$NS" --wait=false
  assert_failure
  assert_output --partial "Forbidden"
  assert_output --partial "owned by LimaVM"
  assert_output --partial "delete the LimaVM resource instead"
}

@test "dry-run deletion of template ConfigMap is also rejected" {
  run rdd ctl delete configmap test-vm-template -n "$NS" --dry-run=server
  assert_failure
  assert_output --partial "Forbidden"
  assert_output --partial "owned by LimaVM"
}

@test "updating LimaVM spec.running does not affect template ConfigMap" {
  before="$(cm .metadata.resourceVersion)"
  rdd ctl patch limavm test-vm -n "$NS" --type=merge -p '{"spec":{"running":true}}'
  rdd ctl patch limavm test-vm -n "$NS" --type=merge -p '{"spec":{"running":false}}'
  sleep 1
  assert_equal "$(cm .metadata.resourceVersion)" "$before"
}

@test "delete LimaVM resource" {
  rdd ctl delete limavm test-vm -n "$NS" --timeout=60s
}

@test "verify LimaVM is deleted" {
  run rdd ctl get limavm test-vm -n "$NS"
  assert_failure
}

@test "wait for template ConfigMap to be automatically deleted" {
  try --max 30 --delay 1 bash -c "! rdd ctl get configmap test-vm-template -n $NS 2>/dev/null"
}

@test "create LimaVM with nonexistent template ConfigMap fails" {
  run bash -c "$(declare -f limavm_manifest); limavm_manifest bad-vm $NS nonexistent-template false | rdd ctl apply -f -"
  assert_failure
  assert_output --partial "not found"
}

@test "create LimaVM with ConfigMap missing template key fails" {
  rdd ctl create configmap no-template-key -n "$NS" --from-literal=other=x
  run bash -c "$(declare -f limavm_manifest); limavm_manifest bad-vm $NS no-template-key false | rdd ctl apply -f -"
  assert_failure
  assert_output --partial '"template" data cannot be empty'
}

@test "create LimaVM with invalid YAML template fails" {
  rdd ctl create configmap invalid-yaml -n "$NS" --from-literal=template='images: [unclosed'
  run bash -c "$(declare -f limavm_manifest); limavm_manifest bad-vm $NS invalid-yaml false | rdd ctl apply -f -"
  assert_failure
  assert_output --partial "failed to parse template"
}

@test "create LimaVM with invalid Lima schema fails" {
  rdd ctl create configmap invalid-schema -n "$NS" --from-literal=template='arch: cray-1'
  run bash -c "$(declare -f limavm_manifest); limavm_manifest bad-vm $NS invalid-schema false | rdd ctl apply -f -"
  assert_failure
  assert_output --partial "failed to validate template"
  assert_output --partial 'field `arch`'
  assert_output --partial 'got `cray-1`'
}
