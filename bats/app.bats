# The App and its LimaVM (cli.md §9.1). Control plane `*`; App in RDD_NAMESPACE. The "VM" is the
# limactl stand-in: the scenarios that look inside a real guest (dockerd/containerd units, k3s
# nodes) are skipped, everything the controllers do is checked.

load helpers/rdd

setup_file() {
  rdd_setup_file
  # Boot slower than a second, so a restarted VM's Running condition gets a new
  # lastTransitionTime (condition times have second precision).
  export LIMACTL_STANDIN_BOOT_MS=1200
  setup_rdd_control_plane '*'
}

teardown_file() { rdd_teardown_file; }

NEEDS_VM="needs a real guest; the limactl stand-in runs no dockerd, containerd or k3s"

app_manifest() {
  cat <<YAML
apiVersion: app.rancherdesktop.io/v1alpha1
kind: App
metadata:
  name: ${1:-app}
spec:
  running: false
  namespace: $RDD_NAMESPACE
${2:-}
YAML
}

app() { rdd_jsonpath app/app "$1"; }
# The App's namespace: RDD_NAMESPACE for the Apps this file applies, the CRD default for those
# `rdd set` creates.
app_ns() { local ns; ns="$(app .spec.namespace 2>/dev/null)"; echo "${ns:-$RDD_NAMESPACE}"; }
lvm() { rdd_jsonpath limavm/rd "$1" -n "$(app_ns)"; }
cond() { echo ".status.conditions[?(@.type==\"$1\")].$2"; }

delete_app() {
  rdd ctl delete app app --ignore-not-found --timeout=90s
}

@test "create App resource" {
  delete_app
  app_manifest | rdd ctl apply -f -
}

@test "verify App is cluster-scoped and accessible without a namespace" {
  run rdd ctl get app app
  assert_success
}

@test "verify App has cleanup finalizer" {
  run app .metadata.finalizers
  assert_output --partial "rdd.rancherdesktop.io/cleanup"
}

@test "wait for LimaVM to be created" {
  try --max 60 --delay 1 rdd ctl get limavm rd -n "$RDD_NAMESPACE"
}

@test "verify App and LimaVM are in the 'all' category" {
  run rdd ctl api-resources --categories=all -o name
  assert_success
  assert_line "apps.app.rancherdesktop.io"
  assert_line "limavms.lima.rancherdesktop.io"
}

@test "verify 'get all' returns the LimaVM instance" {
  run rdd ctl get all -n "$RDD_NAMESPACE" -o name
  assert_success
  assert_line "limavm.lima.rancherdesktop.io/rd"
}

@test "verify LimaVM is named rd" {
  assert_equal "$(lvm .metadata.name)" "rd"
}

@test "verify LimaVM has owned finalizer set by App controller" {
  run lvm .metadata.finalizers
  assert_output --partial "rdd.rancherdesktop.io/owned-by-App"
}

@test "verify LimaVM has cleanup finalizer set by LimaVM webhook" {
  run lvm .metadata.finalizers
  assert_output --partial "rdd.rancherdesktop.io/cleanup"
}

@test "verify LimaVM has owner reference pointing to App" {
  assert_equal "$(lvm '.metadata.ownerReferences[0].kind')" "App"
  assert_equal "$(lvm '.metadata.ownerReferences[0].name')" "app"
  assert_equal "$(lvm '.metadata.ownerReferences[0].controller')" "true"
}

@test "verify LimaVM templateRef points to input ConfigMap" {
  assert_equal "$(lvm .spec.templateRef.name)" "rd"
}

@test "verify LimaVM spec.running starts as false" {
  assert_equal "$(lvm .spec.running)" "false"
}

@test "wait for LimaVM webhook to copy template into rd-template ConfigMap" {
  try --max 30 --delay 1 bash -c "[ \"\$(rdd ctl get limavm rd -n $RDD_NAMESPACE -o jsonpath={.status.templateConfigMap})\" = rd-template ]"
}

@test "verify input ConfigMap is deleted after LimaVM copies it" {
  try --max 30 --delay 1 bash -c "! rdd ctl get configmap rd -n $RDD_NAMESPACE 2>/dev/null"
}

@test "verify rd-template ConfigMap exists and contains template data" {
  run rdd_jsonpath configmap/rd-template .data.template -n "$RDD_NAMESPACE"
  assert_success
  refute_output ""
}

@test "wait for LimaVM Created condition to be set" {
  rdd ctl wait-condition limavm/rd Created -n "$RDD_NAMESPACE" --timeout=300s
}

@test "verify App status mirrors LimaVM Created condition" {
  rdd ctl wait-condition app/app Created --timeout=30s
}

@test "verify App conditions preserve LimaVM LastTransitionTime" {
  assert_equal "$(rdd ctl get app app -o jsonpath="{$(cond Created lastTransitionTime)}")" \
    "$(rdd ctl get limavm rd -n "$RDD_NAMESPACE" -o jsonpath="{$(cond Created lastTransitionTime)}")"
}

@test "propagating running=true updates LimaVM spec.running" {
  rdd ctl patch app app --type=merge -p '{"spec":{"running":true}}'
  try --max 30 --delay 1 bash -c "[ \"\$(rdd ctl get limavm rd -n $RDD_NAMESPACE -o jsonpath={.spec.running})\" = true ]"
}

@test "wait for LimaVM Running condition to become true after start" {
  rdd ctl wait-condition limavm/rd Running -n "$RDD_NAMESPACE" --timeout=300s
}

@test "wait for App Running condition to become True" {
  rdd ctl wait-condition app/app Running --timeout=30s
}

@test "verify App mirrors LimaVM Running condition as True" {
  assert_equal "$(rdd ctl get app app -o jsonpath="{$(cond Running status)}")" "True"
}

@test "verify App Running condition preserves LimaVM LastTransitionTime" {
  assert_equal "$(rdd ctl get app app -o jsonpath="{$(cond Running lastTransitionTime)}")" \
    "$(rdd ctl get limavm rd -n "$RDD_NAMESPACE" -o jsonpath="{$(cond Running lastTransitionTime)}")"
}

@test "R-APP-S2: verify App Running condition observedGeneration reflects App generation" {
  assert_equal "$(rdd ctl get app app -o jsonpath="{$(cond Running observedGeneration)}")" "$(app .metadata.generation)"
}

@test "wait for the instance Docker socket with moby container engine" {
  # The guest's dockerd is forwarded to <short dir>/docker.sock; the stand-in forwards it to this
  # machine's Docker.
  try --max 30 --delay 1 env DOCKER_HOST="unix://$(rdd svc paths docker_socket)" docker info
}

@test "containerd is not running with moby container engine" {
  skip "$NEEDS_VM"
}

@test "switch container engine to containerd restarts the VM" {
  ltt="$(lvm "$(cond Running lastTransitionTime)")"
  otrv="$(lvm .status.observedTemplateResourceVersion)"
  run rdd set --timeout=300s containerEngine.name=containerd
  assert_success
  assert_equal "$(lvm "$(cond Running status)")" "True"
  assert_not_equal "$(lvm "$(cond Running lastTransitionTime)")" "$ltt"
  assert_not_equal "$(lvm .status.observedTemplateResourceVersion)" "$otrv"
}

@test "wait for containerd to be ready with containerd engine" {
  skip "$NEEDS_VM"
}

@test "dockerd is not running with containerd engine" {
  skip "$NEEDS_VM"
}

@test "stop VM and restore moby engine after containerd test" {
  run rdd set --timeout=300s running=false containerEngine.name=moby
  assert_success
  assert_equal "$(lvm "$(cond Running status)")" "False"
}

@test "propagating running=false updates LimaVM spec.running" {
  assert_equal "$(lvm .spec.running)" "false"
}

@test "verify App mirrors LimaVM Running condition as False after stop" {
  rdd ctl wait-condition app/app Running=False --timeout=30s
}

@test "reject App resource with a name other than 'app'" {
  run bash -c "$(declare -f app_manifest); RDD_NAMESPACE=$RDD_NAMESPACE app_manifest not-app | rdd ctl apply -f -"
  assert_failure
  assert_output --partial "App resource must be named 'app'"
}

@test "reject mutation of spec.namespace after creation" {
  run rdd ctl patch app app --type=merge -p '{"spec":{"namespace":"other"}}'
  assert_failure
  assert_output --partial "spec.namespace is immutable"
}

@test "reject direct deletion of LimaVM while owned by App" {
  run rdd ctl delete limavm rd -n "$RDD_NAMESPACE" --wait=false
  assert_failure
  assert_output --partial "Forbidden"
  assert_output --partial "owned by App"
  assert_output --partial "delete the App resource instead"
  assert_equal "$(lvm .metadata.deletionTimestamp)" ""
}

@test "delete App resource" {
  rdd set --timeout=120s running=false
  rdd ctl delete app app --wait=false
}

@test "wait for App to be fully deleted" {
  try --max 90 --delay 1 bash -c "! rdd ctl get app app 2>/dev/null"
}

@test "verify LimaVM rd is deleted when App is deleted" {
  run rdd ctl get limavm rd -n "$RDD_NAMESPACE"
  assert_failure
  assert_output --partial "not found"
}

@test "verify App can be recreated after deletion" {
  app_manifest | rdd ctl apply -f -
  try --max 60 --delay 1 rdd ctl get limavm rd -n "$RDD_NAMESPACE"
  delete_app
}

@test "unsupported Kubernetes version is rejected by admission webhook" {
  run rdd set running=false kubernetes.enabled=true kubernetes.version=1.31.99
  assert_failure 3
  assert_output --partial "not supported"
}

@test "unsupported version does not create App resource" {
  run rdd ctl get app app
  assert_failure
}

@test "mutating webhook resolves Kubernetes version channels and defaults to stable" {
  rdd set --wait=false running=false kubernetes.enabled=true kubernetes.version=stable
  stable="$(app .spec.kubernetes.version)"
  assert_regex "$stable" '^[0-9]+\.[0-9]+\.[0-9]+$'
  delete_app
  rdd set --wait=false running=false kubernetes.enabled=true
  assert_equal "$(app .spec.kubernetes.version)" "$stable"
  delete_app
}

@test "valid Kubernetes version allows LimaVM creation" {
  rdd set --wait=false running=false kubernetes.enabled=true kubernetes.version=1.32.0
  try --max 60 --delay 1 rdd ctl get limavm rd -n "$(app_ns)"
}

@test "start VM with Kubernetes enabled" {
  run rdd set --timeout=900s running=true
  assert_success
  assert_equal "$(lvm "$(cond Running status)")" "True"
}

@test "wait for k3s nodes to be Ready" {
  skip "$NEEDS_VM"
}

@test "kubernetes nodes are Ready" {
  skip "$NEEDS_VM"
}

@test "stop VM after Kubernetes test" {
  rdd set --timeout=300s running=false
  assert_equal "$(lvm "$(cond Running status)")" "False"
  delete_app
}

@test "webhook configuration is registered" {
  assert_equal "$(rdd_jsonpath validatingwebhookconfiguration/app-validator '.webhooks[0].name')" "app-validator.app.rancherdesktop.io"
}

dry_run_app() {
  RDD_NAMESPACE="$(app_ns)" app_manifest app "$1" | rdd ctl apply --dry-run=server -f -
}

@test "dry-run accepts valid App settings" {
  run dry_run_app '  containerEngine: {name: containerd}
  kubernetes: {enabled: false}'
  assert_success
}

@test "dry-run accepts valid containerEngine moby" {
  run dry_run_app '  containerEngine: {name: moby}'
  assert_success
}

@test "dry-run rejects invalid containerEngine name" {
  run dry_run_app '  containerEngine: {name: kvm}'
  assert_failure
  assert_output --partial "containerEngine.name"
}

@test "dry-run accepts kubernetes.enabled=true with empty version" {
  run rdd set --dry-run running=false kubernetes.enabled=true
  assert_success
}

@test "dry-run rejects unsupported kubernetes.version" {
  run dry_run_app '  kubernetes: {enabled: true, version: "0.0.0"}'
  assert_failure
  assert_output --partial "not supported"
}

@test "dry-run accepts supported kubernetes.version" {
  run dry_run_app '  kubernetes: {enabled: true, version: "1.32.0"}'
  assert_success
}

@test "webhook rejects invalid update via patch dry-run" {
  run rdd ctl patch app app --dry-run=server --type=merge -p '{"spec":{"kubernetes":{"enabled":true,"version":"0.0.0"}}}'
  assert_failure
  assert_output --partial "not supported"
  assert_equal "$(app .spec.containerEngine.name)" "moby"
  delete_app
}
