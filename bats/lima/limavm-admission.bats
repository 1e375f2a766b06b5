# LimaVM admission (cli.md §9.7, resources.md §2.6). Control plane `lima`; three namespaces each
# holding ConfigMap `test-template` with a minimal template.

load ../helpers/rdd
load ../helpers/lima

setup_file() {
  rdd_setup_file
  setup_rdd_control_plane lima
  for ns in test-ns1 test-ns2 test-ns3; do
    template_configmap "$ns" test-template
  done
}

teardown_file() { rdd_teardown_file; }

@test "webhook configuration has correct structure" {
  w=mutatingwebhookconfiguration/limavm-defaulter
  assert_equal "$(rdd_jsonpath $w '.webhooks[0].failurePolicy')" "Fail"
  assert_equal "$(rdd_jsonpath $w '.webhooks[0].name')" "limavm-defaulter.lima.rancherdesktop.io"
  assert_equal "$(rdd_jsonpath $w '.webhooks[0].rules[0].apiGroups[0]')" "lima.rancherdesktop.io"
  assert_equal "$(rdd_jsonpath $w '.webhooks[0].rules[0].apiVersions[0]')" "v1alpha1"
  assert_equal "$(rdd_jsonpath $w '.webhooks[0].rules[0].resources[0]')" "limavms"
  assert_equal "$(rdd_jsonpath $w '.webhooks[0].rules[0].operations[0]')" "CREATE"
}

@test "create LimaVM in first namespace succeeds" {
  run rdd lima create my-vm test-template -n test-ns1
  assert_success
  assert_output --partial "created"
}

@test "duplicate LimaVM name in different namespace is rejected" {
  run rdd lima create my-vm test-template -n test-ns2
  assert_failure 3
  assert_output --partial "denied the request"
  assert_output --partial "already used"
  assert_output --partial "unique across all namespaces"
  run rdd ctl get limavm my-vm -n test-ns2
  assert_failure
}

@test "dry-run validates duplicate names without creating resource" {
  run bash -c "$(declare -f limavm_manifest); limavm_manifest my-vm test-ns2 test-template false | rdd ctl apply --dry-run=server -f -"
  assert_failure
  assert_output --partial "Forbidden"
  assert_output --partial "already used"
  run rdd ctl get limavm my-vm -n test-ns2
  assert_failure
}

@test "dry-run validates template data without creating ConfigMap copy" {
  rdd ctl create configmap empty-template -n test-ns3 --from-literal=template=
  run bash -c "$(declare -f limavm_manifest); limavm_manifest empty-vm test-ns3 empty-template false | rdd ctl apply --dry-run=server -f -"
  assert_failure
  assert_output --partial "denied the request"
  assert_output --partial '"template" data cannot be empty'
  run rdd ctl get configmap empty-vm-template -n test-ns3
  assert_failure
}

@test "dry-run detects pre-existing ConfigMap name conflict" {
  rdd ctl create configmap test-vm-template -n test-ns3 --from-literal=unrelated=yes
  run bash -c "$(declare -f limavm_manifest); limavm_manifest test-vm test-ns3 test-template false | rdd ctl apply --dry-run=server -f -"
  assert_failure
  assert_output --partial "already exists"
  assert_output --partial "test-vm-template"
  run rdd lima create test-vm test-template -n test-ns3
  assert_failure
  assert_output --partial "already exists"
  assert_equal "$(rdd_jsonpath configmap/test-vm-template .data.unrelated -n test-ns3)" "yes"
  rdd ctl delete configmap test-vm-template -n test-ns3
}

@test "deletion allows recreation in different namespace" {
  rdd lima delete my-vm --timeout=10s
  run rdd lima create my-vm test-template -n test-ns2
  assert_success
  rdd lima delete my-vm --timeout=10s
}

@test "multiple unique VMs across namespaces are allowed" {
  rdd lima create vm1 test-template -n test-ns1
  rdd lima create vm2 test-template -n test-ns2
  rdd lima create vm3 test-template -n test-ns3
  for i in 1 2 3; do
    run rdd ctl get limavm "vm$i" -n "test-ns$i"
    assert_success
  done
  for i in 1 2 3; do rdd lima delete "vm$i" --timeout=30s; done
}
