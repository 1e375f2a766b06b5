# A LimaVM that runs (cli.md §9.11): host agent, logs, shell, crash recovery, a killed control
# plane, restarts and template changes. Control plane `lima`; the limactl stand-in boots the
# template.

load ../helpers/rdd
load ../helpers/lima

NS=running-test-ns
VM=test-running

setup_file() {
  rdd_setup_file
  # Boot slower than a second: `--since=startup` compares second-precision times, strictly.
  export LIMACTL_STANDIN_BOOT_MS=1200
  setup_rdd_control_plane lima
  LIMA_HOME="$(rdd svc paths lima_home)"
  export LIMA_HOME
}

teardown_file() { rdd_teardown_file; }

field() { rdd_jsonpath "limavm/${2:-$VM}" "$1" -n "$NS"; }
ha_pid() { cat "$LIMA_HOME/$VM/ha.pid"; }
restart_count() { local n; n="$(field .status.restartCount)"; echo "${n:-0}"; }
alive() { kill -0 "$1" 2>/dev/null; }

@test "create source template ConfigMap for running tests" {
  template_configmap "$NS" source-template "$(bootable_template)"
}

@test "create LimaVM with running=false" {
  limavm_manifest "$VM" "$NS" source-template false | rdd ctl apply -f -
}

@test "wait for Created condition" {
  rdd ctl wait-condition "limavm/$VM" Created -n "$NS" --timeout=60s
}

@test "verify initial Running condition is False/Stopped" {
  rdd ctl wait-condition "limavm/$VM" Running=False --reason=Stopped -n "$NS" --timeout=30s
}

@test "start the VM by setting running=true" {
  rdd ctl patch limavm "$VM" -n "$NS" --type=merge -p '{"spec":{"running":true}}'
}

@test "wait for Running condition to become True/Started" {
  rdd ctl wait-condition "limavm/$VM" Running=True --reason=Started -n "$NS" --timeout=300s
}

@test "verify hostagent PID file exists" {
  assert_file_exists "$LIMA_HOME/$VM/ha.pid"
}

@test "logs shows hostagent stderr" {
  run rdd limavm logs "$VM"
  assert_success
  assert_output --partial "hostagent socket created"
}

@test "logs --stdout shows hostagent stdout" {
  try --max 10 --delay 0.5 rdd limavm logs "$VM" --stdout
  assert_output --partial "sshLocalPort"
}

@test "shell executes command in running VM" {
  run rdd limavm shell "$VM" uname -s
  assert_success
  assert_output "Linux"
}

@test "shell fails when VM is not running" {
  limavm_manifest stopped-vm "$NS" source-template false | rdd ctl apply -f -
  rdd ctl wait-condition limavm/stopped-vm Created -n "$NS" --timeout=60s
  run rdd limavm shell stopped-vm uname -s
  assert_failure
  assert_output --partial "is not running"
  rdd lima delete stopped-vm --timeout=60s
}

@test "stop the VM by setting running=false" {
  rdd ctl patch limavm "$VM" -n "$NS" --type=merge -p '{"spec":{"running":false}}'
}

@test "wait for Running condition to become False/Stopped" {
  rdd ctl wait-condition "limavm/$VM" Running=False --reason=Stopped -n "$NS" --timeout=60s
}

@test "verify hostagent PID file is removed" {
  assert_file_not_exists "$LIMA_HOME/$VM/ha.pid"
}

@test "start VM for crash recovery test" {
  run rdd limavm start "$VM" --timeout=60s
  assert_success
}

@test "simulate crash by killing hostagent" {
  echo "$(ha_pid)" >"$BATS_FILE_TMPDIR/crashed.pid"
  echo "$(restart_count)" >"$BATS_FILE_TMPDIR/count"
  kill -9 "$(ha_pid)"
}

@test "trigger reconcile and verify crash recovery" {
  want=$(($(cat "$BATS_FILE_TMPDIR/count") + 1))
  rdd ctl annotate limavm "$VM" -n "$NS" --overwrite rdd-bats/poke="$(date +%s%N)" &
  try --max 120 --delay 0.5 bash -c "[ \"\$(rdd ctl get limavm $VM -n $NS -o jsonpath={.status.restartCount})\" -ge $want ]"
  wait
}

@test "verify new hostagent after crash recovery" {
  try --max 20 --delay 0.5 test -s "$LIMA_HOME/$VM/ha.pid"
  new="$(ha_pid)"
  assert alive "$new"
  assert_not_equal "$new" "$(cat "$BATS_FILE_TMPDIR/crashed.pid")"
}

@test "save hostagent PID before service crash" {
  rdd ctl wait-condition "limavm/$VM" Running=True -n "$NS" --timeout=60s
  echo "$(ha_pid)" >"$BATS_FILE_TMPDIR/orphan.pid"
  echo "$(restart_count)" >"$BATS_FILE_TMPDIR/count"
}

@test "simulate service crash with SIGKILL" {
  pid="$(cat "$(rdd svc paths pid_file)")"
  kill -9 "$pid"
  try --max 20 --delay 0.25 bash -c "! kill -0 $pid 2>/dev/null"
}

@test "verify hostagent survived service crash" {
  assert alive "$(cat "$BATS_FILE_TMPDIR/orphan.pid")"
}

@test "restart service and verify orphaned hostagent recovery" {
  orphan="$(cat "$BATS_FILE_TMPDIR/orphan.pid")"
  want=$(($(cat "$BATS_FILE_TMPDIR/count") + 1))
  rdd svc start
  try --max 120 --delay 0.5 bash -c "[ \"\$(rdd ctl get limavm $VM -n $NS -o jsonpath={.status.restartCount})\" -ge $want ]"
  try --max 20 --delay 0.25 bash -c "! kill -0 $orphan 2>/dev/null"
  rdd ctl wait-condition "limavm/$VM" Running=True -n "$NS" --timeout=60s
  assert_not_equal "$(ha_pid)" "$orphan"
}

@test "graceful service stop terminates hostagent" {
  agent="$(ha_pid)"
  rdd svc stop
  assert_file_not_exists "$LIMA_HOME/$VM/ha.pid"
  try --max 20 --delay 0.25 bash -c "! kill -0 $agent 2>/dev/null"
}

@test "restart service after graceful shutdown" {
  rdd svc start
  rdd ctl wait-condition "limavm/$VM" Running=True --reason=Started --since=startup -n "$NS" --timeout=120s
}

@test "restart running VM via rdd limavm restart" {
  before="$(restart_count)"
  run rdd limavm restart "$VM" --timeout=120s
  assert_success
  assert_output --partial "restart requested"
  assert [ "$(restart_count)" -eq $((before + 1)) ]
}

@test "verify restartNeeded cleared and annotation removed after restart" {
  try --max 20 --delay 0.5 bash -c "[ \"\$(rdd ctl get limavm $VM -n $NS -o jsonpath={.status.restartNeeded})\" != true ]"
  assert_equal "$(field '.metadata.annotations.lima\.rancherdesktop\.io/restartRequested')" ""
}

@test "stop VM for stopped-restart test" {
  rdd limavm stop "$VM" --timeout=60s
}

@test "restart annotation on stopped VM with running=false clears restartNeeded" {
  rdd ctl annotate limavm "$VM" -n "$NS" lima.rancherdesktop.io/restartRequested="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  try --max 40 --delay 0.5 bash -c "[ -z \"\$(rdd ctl get limavm $VM -n $NS -o jsonpath='{.metadata.annotations.lima\.rancherdesktop\.io/restartRequested}')\" ]"
  assert_not_equal "$(field .status.restartNeeded)" "true"
  assert_equal "$(limavm_condition "$VM" "$NS" Running reason)" "Stopped"
  assert_equal "$(field .spec.running)" "false"
}

@test "restart command on stopped VM starts it" {
  run rdd limavm restart "$VM" --timeout=120s
  assert_success
  rdd ctl wait-condition "limavm/$VM" Running=True -n "$NS" --timeout=60s
  assert_not_equal "$(field .status.restartNeeded)" "true"
}

@test "verify on-disk template does not contain TEMPLATE_CHANGE_MARKER" {
  run cat "$LIMA_HOME/$VM/lima.yaml"
  refute_output --partial "TEMPLATE_CHANGE_MARKER"
}

@test "patch template ConfigMap to trigger restart of running instance" {
  text="$(rdd_jsonpath "configmap/$VM-template" .data.template -n "$NS")
env:
  TEMPLATE_CHANGE_MARKER: applied"
  rdd ctl create configmap "$VM-template" -n "$NS" --from-literal=template="$text" --dry-run=client -o json |
    rdd ctl patch configmap "$VM-template" -n "$NS" --type=merge --patch-file=/dev/stdin
  rdd_jsonpath "configmap/$VM-template" .metadata.resourceVersion -n "$NS" >"$BATS_FILE_TMPDIR/rv"
}

@test "wait for instance restart after template change" {
  rv="$(cat "$BATS_FILE_TMPDIR/rv")"
  try --max 120 --delay 0.5 bash -c "[ \"\$(rdd ctl get limavm $VM -n $NS -o jsonpath={.status.observedTemplateResourceVersion})\" = $rv ]"
  rdd ctl wait-condition "limavm/$VM" Running=True -n "$NS" --timeout=120s
}

@test "verify on-disk template contains env variable after restart" {
  run cat "$LIMA_HOME/$VM/lima.yaml"
  assert_output --partial "TEMPLATE_CHANGE_MARKER"
}

@test "verify guest applied template change" {
  run rdd limavm shell "$VM" printenv TEMPLATE_CHANGE_MARKER
  assert_success
  assert_output "applied"
}

@test "stop VM for stopped-template-change test" {
  rdd limavm stop "$VM" --timeout=60s
}

@test "patch template ConfigMap while instance is stopped" {
  text="$(rdd_jsonpath "configmap/$VM-template" .data.template -n "$NS")
  SECOND_MARKER: stopped"
  rdd ctl create configmap "$VM-template" -n "$NS" --from-literal=template="$text" --dry-run=client -o json |
    rdd ctl patch configmap "$VM-template" -n "$NS" --type=merge --patch-file=/dev/stdin
  rdd_jsonpath "configmap/$VM-template" .metadata.resourceVersion -n "$NS" >"$BATS_FILE_TMPDIR/rv"
}

@test "verify on-disk template updated without starting the instance" {
  rv="$(cat "$BATS_FILE_TMPDIR/rv")"
  try --max 60 --delay 0.5 bash -c "[ \"\$(rdd ctl get limavm $VM -n $NS -o jsonpath={.status.observedTemplateResourceVersion})\" = $rv ]"
  run cat "$LIMA_HOME/$VM/lima.yaml"
  assert_output --partial "SECOND_MARKER"
  assert_equal "$(limavm_condition "$VM" "$NS" Running reason)" "Stopped"
  assert_file_not_exists "$LIMA_HOME/$VM/ha.pid"
}

@test "cleanup LimaVM running test" {
  rdd lima delete "$VM" --timeout=60s
}

@test "limavm edit command updates template ConfigMap" {
  limavm_manifest edit-vm "$NS" source-template false | rdd ctl apply -f -
  try --max 30 --delay 0.5 bash -c "[ -n \"\$(rdd ctl get limavm edit-vm -n $NS -o jsonpath={.status.templateConfigMap})\" ]"
  editor="$BATS_FILE_TMPDIR/editor"
  printf '#!/bin/sh\nprintf "\\n%%s\\n" "mountType: 9p" >>"$1"\n' >"$editor"
  chmod +x "$editor"
  run env EDITOR="$editor" rdd limavm edit edit-vm
  assert_success
  assert_output --partial "updated successfully"
  run rdd_jsonpath configmap/edit-vm-template .data.template -n "$NS"
  assert_output --partial "mountType: 9p"
}

@test "limavm edit aborts when all content is deleted" {
  before="$(rdd_jsonpath configmap/edit-vm-template .data.template -n "$NS")"
  editor="$BATS_FILE_TMPDIR/clear"
  printf '#!/bin/sh\n: >"$1"\n' >"$editor"
  chmod +x "$editor"
  run env EDITOR="$editor" rdd limavm edit edit-vm
  assert_failure
  assert_output --partial "template data was cleared, aborting edit"
  assert_equal "$(rdd_jsonpath configmap/edit-vm-template .data.template -n "$NS")" "$before"
}

@test "limavm edit skips update when no changes made" {
  run env EDITOR=true rdd limavm edit edit-vm
  assert_success
  assert_output --partial "No changes made to template, skipping update"
}

@test "limavm edit fails gracefully for nonexistent VM" {
  run env EDITOR=true rdd limavm edit nonexistent-vm
  assert_failure
  assert_output --partial 'nonexistent-vm\" not found in any namespace'
}

@test "limavm edit rejects invalid template" {
  editor="$BATS_FILE_TMPDIR/invalid"
  printf '#!/bin/sh\necho "arch: cray-1" >"$1"\n' >"$editor"
  chmod +x "$editor"
  run env EDITOR="$editor" rdd limavm edit edit-vm
  assert_failure 3
  assert_output --partial 'got `cray-1`'
  rdd lima delete edit-vm --timeout=60s
}
