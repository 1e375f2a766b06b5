//! rdd's own CRDs (`deploy/crds`, generated from `rdd-api`) install into `rdd svc` and read well
//! with kubectl: explain shows the field descriptions, tables the printer columns.

use std::path::PathBuf;

use crate::harness::{KUBECTL_OLD, Server, kubectl_new, repo_root};

#[test]
fn deploy_crds_install_explain_columns_and_short_names() {
    let s = Server::start();
    let crds = repo_root().join("deploy/crds");
    for k in [PathBuf::from(KUBECTL_OLD), kubectl_new()] {
        let out = s.ok(&k, &["apply", "-f", crds.to_str().unwrap()]);
        assert_eq!(out.lines().count(), 11, "{out}");
        s.ok(
            &k,
            &[
                "wait",
                "--for=condition=Established",
                "crd",
                "--all",
                "--timeout=20s",
            ],
        );
        let ex = s.ok(&k, &["explain", "app.spec"]);
        assert!(
            ex.contains("running") && ex.contains("Desired VM state"),
            "{ex}"
        );
        let ex = s.ok(&k, &["explain", "container.status.ports"]);
        assert!(ex.contains("Exposed ports, sorted by name"), "{ex}");
        let ex = s.ok(&k, &["explain", "container.status.status"]);
        assert!(
            ex.contains("created, running, pausing"),
            "enumerations spelled out: {ex}"
        );
    }
    let k = PathBuf::from(KUBECTL_OLD);
    // The App singleton with its schema defaults.
    let o = s.apply_stdin(&k, &["apply", "-f", "-"], "apiVersion: app.rancherdesktop.io/v1alpha1\nkind: App\nmetadata:\n  name: app\nspec:\n  running: false\n");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        s.ok(
            &k,
            &[
                "get",
                "app",
                "app",
                "-o",
                "jsonpath={.spec.namespace}/{.spec.containerEngine.name}"
            ]
        ),
        "default/moby"
    );
    // A Container mirror shows the Running column from its condition.
    let id = "a".repeat(64);
    let o = s.apply_stdin(&k, &["apply", "-f", "-"], &format!("apiVersion: containers.rancherdesktop.io/v1alpha1\nkind: Container\nmetadata:\n  name: {id}\n"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let status = r#"{"status":{"name":"web","namespace":"moby","path":"/bin/sh","image":"sha256:x","status":"running","conditions":[{"type":"Running","status":"True","reason":"Running","message":"Container is running","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}"#;
    s.ok(
        &k,
        &[
            "patch",
            "container",
            &id,
            "--subresource=status",
            "--type=merge",
            "-p",
            status,
        ],
    );
    let table = s.ok(&k, &["get", "containers"]);
    assert!(
        table.lines().next().unwrap().contains("RUNNING")
            && table.lines().nth(1).unwrap().ends_with("True"),
        "{table}"
    );
    // An unknown status value is refused by the enum.
    let bad = r#"{"status":{"status":"sleeping"}}"#;
    let err = s.fails(
        &k,
        &[
            "patch",
            "container",
            &id,
            "--subresource=status",
            "--type=merge",
            "-p",
            bad,
        ],
    );
    assert!(err.contains("Unsupported value"), "{err}");
    // Short names and categories.
    let o = s.apply_stdin(&k, &["apply", "-f", "-"], "apiVersion: containers.rancherdesktop.io/v1alpha1\nkind: ContainerNamespace\nmetadata:\n  name: moby\n");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        s.ok(&k, &["get", "cns", "-o", "name"]).trim(),
        "containernamespace.containers.rancherdesktop.io/moby"
    );
    let all = s.ok(&k, &["get", "all", "-o", "name"]);
    assert!(
        all.contains("container.containers.rancherdesktop.io/")
            && all.contains("app.app.rancherdesktop.io/app"),
        "{all}"
    );
}

/// The CEL rules rdd's CRDs carry are enforced: the App singleton, immutable fields, and a
/// CRD whose rule does not compile is refused.
#[test]
fn deploy_crd_cel_rules_are_enforced() {
    let s = Server::start();
    let k = PathBuf::from(KUBECTL_OLD);
    s.ok(
        &k,
        &[
            "apply",
            "-f",
            repo_root().join("deploy/crds").to_str().unwrap(),
        ],
    );
    let app = |name: &str| {
        format!(
            "apiVersion: app.rancherdesktop.io/v1alpha1\nkind: App\nmetadata:\n  name: {name}\nspec:\n  running: false\n"
        )
    };
    let o = s.apply_stdin(&k, &["apply", "-f", "-"], &app("foo"));
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("App resource must be named 'app'"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
    let o = s.apply_stdin(&k, &["apply", "-f", "-"], &app("app"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = s.fails(
        &k,
        &[
            "patch",
            "app",
            "app",
            "--type=merge",
            "-p",
            r#"{"spec":{"namespace":"other"}}"#,
        ],
    );
    assert!(err.contains("spec.namespace is immutable"), "{err}");
    s.ok(
        &k,
        &[
            "patch",
            "app",
            "app",
            "--type=merge",
            "-p",
            r#"{"spec":{"running":true}}"#,
        ],
    );
    // LimaVM templateRef is immutable.
    let vm = "apiVersion: lima.rancherdesktop.io/v1alpha1\nkind: LimaVM\nmetadata:\n  name: vm\nspec:\n  templateRef:\n    name: t\n";
    let o = s.apply_stdin(&k, &["apply", "-f", "-"], vm);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let err = s.fails(
        &k,
        &[
            "patch",
            "limavm",
            "vm",
            "--type=merge",
            "-p",
            r#"{"spec":{"templateRef":{"name":"u"}}}"#,
        ],
    );
    assert!(err.contains("templateRef is immutable"), "{err}");
    s.ok(
        &k,
        &[
            "patch",
            "limavm",
            "vm",
            "--type=merge",
            "-p",
            r#"{"spec":{"running":true}}"#,
        ],
    );
    // A rule that does not compile rejects the CRD.
    let bad = "apiVersion: apiextensions.k8s.io/v1\nkind: CustomResourceDefinition\nmetadata:\n  name: bads.test.rdd.io\nspec:\n  group: test.rdd.io\n  scope: Namespaced\n  names: {plural: bads, kind: Bad}\n  versions:\n  - name: v1\n    served: true\n    storage: true\n    schema:\n      openAPIV3Schema:\n        type: object\n        x-kubernetes-validations:\n        - rule: \"self.metadata.name ==\"\n";
    let o = s.apply_stdin(&k, &["apply", "-f", "-"], bad);
    assert!(!o.status.success());
    assert!(
        String::from_utf8_lossy(&o.stderr).contains("compilation failed"),
        "{}",
        String::from_utf8_lossy(&o.stderr)
    );
}

/// rdd's ValidatingAdmissionPolicies in `deploy/admission` (loaded with kubectl, as into a real
/// cluster) deny and warn as resources.md §5.1/§5.2.1 say, through kubectl v1.32 and v1.37.
#[test]
fn deploy_admission_policies_deny_and_warn() {
    let s = Server::start();
    let old = PathBuf::from(KUBECTL_OLD);
    s.ok(
        &old,
        &[
            "apply",
            "-f",
            repo_root().join("deploy/crds").to_str().unwrap(),
        ],
    );
    s.ok(
        &old,
        &[
            "apply",
            "-f",
            repo_root().join("deploy/admission").to_str().unwrap(),
        ],
    );
    for (i, k) in [old.clone(), kubectl_new()].iter().enumerate() {
        let id = ["c", "d"][i].repeat(64);
        let with_action = format!(
            "apiVersion: containers.rancherdesktop.io/v1alpha1\nkind: Container\nmetadata:\n  name: {id}\n  annotations:\n    containers.rancherdesktop.io/action: stop\n"
        );
        let o = s.apply_stdin(k, &["apply", "-f", "-"], &with_action);
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("containers.rancherdesktop.io/action annotation is not allowed on create")
                && err.contains(
                    "ValidatingAdmissionPolicy 'container-action.containers.rancherdesktop.io'"
                ),
            "{err}"
        );
        // Dry run is admitted the same way and stores nothing.
        let o = s.apply_stdin(k, &["apply", "--dry-run=server", "-f", "-"], &with_action);
        assert!(!o.status.success(), "dry run must see the denial");
        let plain = format!(
            "apiVersion: containers.rancherdesktop.io/v1alpha1\nkind: Container\nmetadata:\n  name: {id}\n"
        );
        let o = s.apply_stdin(k, &["create", "-f", "-"], &plain);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let err = s.fails(
            k,
            &[
                "annotate",
                "container",
                &id,
                "containers.rancherdesktop.io/action=explode",
            ],
        );
        assert!(
            err.contains("invalid containers.rancherdesktop.io/action annotation \"explode\""),
            "{err}"
        );
        s.ok(
            k,
            &[
                "annotate",
                "container",
                &id,
                "containers.rancherdesktop.io/action=restart",
            ],
        );
        // ContainerNamespace deletion is allowed with a warning.
        let o = s.apply_stdin(k, &["apply", "-f", "-"], "apiVersion: containers.rancherdesktop.io/v1alpha1\nkind: ContainerNamespace\nmetadata:\n  name: moby\n");
        assert!(o.status.success());
        let o = s.kubectl_with(k, &["delete", "cns", "moby"]);
        assert!(o.status.success());
        assert!(
            String::from_utf8_lossy(&o.stderr)
                .contains("namespace delete validation not implemented"),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
    // A policy without a binding has no effect.
    let unbound = "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicy\nmetadata:\n  name: deny-all-configmaps\nspec:\n  matchConstraints:\n    resourceRules:\n    - apiGroups: [\"\"]\n      apiVersions: [\"v1\"]\n      resources: [\"configmaps\"]\n      operations: [\"*\"]\n  validations:\n  - expression: \"false\"\n    message: no configmaps\n";
    let o = s.apply_stdin(&old, &["apply", "-f", "-"], unbound);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    s.ok(&old, &["create", "configmap", "still-allowed"]);
}

/// A CRD of the `things.test.rdd.io` shape with the given rule on `spec` (YAML flow mapping).
fn crd_with_spec_rule(rule: &str) -> String {
    format!(
        r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: things.test.rdd.io
spec:
  group: test.rdd.io
  scope: Namespaced
  names: {{plural: things, kind: Thing}}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              replicas: {{type: integer}}
              name: {{type: string, maxLength: 20}}
              tags: {{type: array, maxItems: 5, items: {{type: string, maxLength: 10}}}}
            x-kubernetes-validations:
            - {rule}
"#
    )
}

/// CP-123a: a rule is type-checked against the schema when the CRD is created, so what a real
/// cluster refuses is refused here with the reason (kubectl v1.32 and v1.37); a well-typed CRD
/// installs and its rules, messageExpression, reason, fieldPath and optionalOldSelf transition
/// rule act on custom resources.
#[test]
fn crd_cel_rules_are_type_checked_at_creation() {
    let s = Server::start();
    let old = PathBuf::from(KUBECTL_OLD);
    for (k, (rule, want)) in [old.clone(), kubectl_new()].iter().cycle().zip([
        (r#"{rule: "self.replica > 0"}"#, "undefined field 'replica'"),
        (
            r#"{rule: "self.name"}"#,
            "cel expression must evaluate to a bool (got string)",
        ),
        (
            r#"{rule: "self.name.frobnicate()"}"#,
            "undeclared reference to 'frobnicate'",
        ),
        (
            r#"{rule: "self.replicas == 'three'"}"#,
            "found no matching overload for '_==_' applied to '(int, string)'",
        ),
        (
            r#"{rule: "self.tags.all(t, t.size > 1)"}"#,
            "type 'string' does not support field selection",
        ),
        (
            r#"{rule: "self.replicas > 0", messageExpression: "self.replicas"}"#,
            "messageExpression must evaluate to a string (got int)",
        ),
        (
            r#"{rule: "self.replicas > 0", reason: Because}"#,
            "Unsupported value: \"Because\"",
        ),
        (
            r#"{rule: "other.x > 0"}"#,
            "undeclared reference to 'other'",
        ),
        (
            r#"{rule: "!oldSelf.hasValue() || oldSelf.value().name == self.name", optionalOldSelf: true}"#,
            "write `oldSelf == null || ...`",
        ),
    ]) {
        let o = s.apply_stdin(k, &["apply", "-f", "-"], &crd_with_spec_rule(rule));
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(!o.status.success(), "{rule} was accepted");
        assert!(
            err.contains("spec.versions[0].schema.openAPIV3Schema.properties[spec].x-kubernetes-validations[0]")
                && err.contains(want),
            "{rule}: {err}"
        );
    }
    assert!(
        !s.ok(&old, &["get", "crd", "-o", "name"]).contains("things"),
        "nothing stored"
    );

    // Well typed: installs, and its rules act.
    let rule = r#"{rule: "self.replicas <= 3 && self.tags.all(t, t.startsWith('t'))", messageExpression: "'replicas ' + string(self.replicas) + ' over 3 or a tag without t'", reason: FieldValueForbidden, fieldPath: ".replicas"}
            - {rule: "oldSelf == null || self.name == oldSelf.name", message: name is immutable, optionalOldSelf: true}"#;
    let o = s.apply_stdin(&old, &["apply", "-f", "-"], &crd_with_spec_rule(rule));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    s.ok(
        &old,
        &[
            "wait",
            "--for=condition=Established",
            "crd/things.test.rdd.io",
        ],
    );
    let thing = |replicas: i64, name: &str| {
        format!(
            "apiVersion: test.rdd.io/v1\nkind: Thing\nmetadata:\n  name: t1\nspec:\n  replicas: {replicas}\n  name: {name}\n  tags: [ta, tb]\n"
        )
    };
    let o = s.apply_stdin(&old, &["apply", "-f", "-"], &thing(5, "a"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(
        err.contains("spec.replicas: Forbidden: replicas 5 over 3 or a tag without t"),
        "{err}"
    );
    let o = s.apply_stdin(&old, &["apply", "-f", "-"], &thing(2, "a"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = s.apply_stdin(&kubectl_new(), &["apply", "-f", "-"], &thing(2, "b"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success());
    assert!(err.contains("name is immutable"), "{err}");
    let o = s.apply_stdin(&kubectl_new(), &["apply", "-f", "-"], &thing(3, "a"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// CP-108 (validation ratcheting) for CEL rules, through kubectl: a value stored before a rule
/// tightened is not re-reported while an update leaves it alone, and is checked again as soon
/// as the update changes it. The rule sits on `spec.replicas`, so writing `spec.name` leaves
/// its value unchanged.
#[test]
fn cp_108_cel_rule_errors_of_unchanged_values_are_ratcheted() {
    let s = Server::start();
    let k = PathBuf::from(KUBECTL_OLD);
    let crd = |max: i64| {
        format!(
            r#"apiVersion: apiextensions.k8s.io/v1
kind: CustomResourceDefinition
metadata:
  name: gauges.test.rdd.io
spec:
  group: test.rdd.io
  scope: Namespaced
  names: {{plural: gauges, kind: Gauge}}
  versions:
  - name: v1
    served: true
    storage: true
    schema:
      openAPIV3Schema:
        type: object
        properties:
          spec:
            type: object
            properties:
              name: {{type: string}}
              replicas:
                type: integer
                x-kubernetes-validations:
                - {{rule: "self <= {max}", message: "at most {max} replicas"}}
"#
        )
    };
    let o = s.apply_stdin(&k, &["apply", "-f", "-"], &crd(5));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    s.ok(
        &k,
        &[
            "wait",
            "--for=condition=Established",
            "crd/gauges.test.rdd.io",
        ],
    );
    let gauge = |replicas: i64, name: &str| {
        format!(
            "apiVersion: test.rdd.io/v1\nkind: Gauge\nmetadata:\n  name: g1\nspec:\n  replicas: {replicas}\n  name: {name}\n"
        )
    };
    let o = s.apply_stdin(&k, &["apply", "-f", "-"], &gauge(4, "a"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // The rule tightens: the stored 4 is now invalid.
    let o = s.apply_stdin(&k, &["apply", "-f", "-"], &crd(2));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // A new object is checked in full.
    let o = s.apply_stdin(
        &k,
        &["create", "-f", "-", "--dry-run=server"],
        &gauge(4, "b").replace("g1", "g2"),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success(),
        "a new gauge with 4 replicas was accepted"
    );
    assert!(err.contains("at most 2 replicas"), "{err}");
    // An update that leaves replicas alone passes.
    let o = s.apply_stdin(&k, &["apply", "-f", "-"], &gauge(4, "renamed"));
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    assert_eq!(
        s.ok(&k, &["get", "gauge", "g1", "-o", "jsonpath={.spec.name}"]),
        "renamed"
    );
    // One that changes it is checked again, even towards a smaller invalid value.
    let o = s.apply_stdin(&k, &["apply", "-f", "-"], &gauge(3, "renamed"));
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(!o.status.success(), "replicas 4 → 3 was accepted");
    assert!(
        err.contains("spec.replicas") && err.contains("at most 2 replicas"),
        "{err}"
    );
    assert_eq!(
        s.ok(
            &k,
            &["get", "gauge", "g1", "-o", "jsonpath={.spec.replicas}"]
        ),
        "4"
    );
}
