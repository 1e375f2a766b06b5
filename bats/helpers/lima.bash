# Templates and ConfigMaps for the LimaVM suites (cli.md §9.7–§9.11). The limactl stand-in is the
# "VM": the limavm-controller prepares the image first (an undownloadable one fails creation),
# then any template boots (after LIMACTL_STANDIN_BOOT_MS).

# A template the stand-in boots; its images are the offline fixtures, which the
# limavm-controller downloads (file://) and decompresses before Created=True.
bootable_template() {
  local images="file://$RDD_REPO/testkit/fixtures/images"
  cat <<YAML
images:
- location: "$images/distro.v0.2.6.amd64.raw.xz"
  arch: "x86_64"
- location: "$images/distro.v0.2.6.arm64.raw.xz"
  arch: "aarch64"
cpus: 1
memory: "1GiB"
YAML
}

# A template that never boots: its image cannot be downloaded, so creation fails
# (Created=False/CreateFailed naming the URL).
nonbootable_template() {
  cat <<'YAML'
images:
- location: "https://foo.test."
YAML
}

# template_configmap NS NAME [TEMPLATE_TEXT]: a ConfigMap with key `template` (default: the
# non-bootable template).
template_configmap() {
  local ns="$1" name="$2" text="${3:-$(nonbootable_template)}"
  rdd ctl create namespace "$ns" --dry-run=client -o yaml | rdd ctl apply -f - >/dev/null
  rdd ctl create configmap "$name" -n "$ns" --from-literal=template="$text" --dry-run=client -o yaml |
    rdd ctl apply -f -
}

# limavm_manifest NAME NS TEMPLATE_CM RUNNING
limavm_manifest() {
  cat <<YAML
apiVersion: lima.rancherdesktop.io/v1alpha1
kind: LimaVM
metadata:
  name: $1
  namespace: $2
spec:
  templateRef:
    name: $3
  running: $4
YAML
}

# limavm_condition NAME NS TYPE FIELD: one field (status, reason, message) of a condition.
limavm_condition() {
  rdd ctl get limavm "$1" -n "$2" -o "jsonpath={.status.conditions[?(@.type==\"$3\")].$4}"
}
