//! Every admission rule of resources.md §2.6 (LimaVM and its template ConfigMaps) and the CEL
//! rule of the LimaVM CRD, each violated once and satisfied once through kubectl, against
//! `rdd svc serve --controllers=limavm`: the supervised limavm-controller registers and serves
//! the webhooks and runs `limactl-standin` for `limactl template validate`.
//!
//! Needs the sibling binaries: `cargo build -p limavm-controller -p limactl-standin`.

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::harness::{KUBECTL_OLD, Server, kubectl_new};

const CLEANUP: &str = "rdd.rancherdesktop.io/cleanup";
const OWNED_BY_LIMAVM: &str = "rdd.rancherdesktop.io/owned-by-LimaVM";
const LABEL: &str = "lima.rancherdesktop.io/template-configmap";
const GOOD: &str = "images:\n- location: https://example.invalid/a.raw.xz\n  arch: x86_64\n";

fn sibling(name: &str) -> PathBuf {
    let p = Path::new(env!("CARGO_BIN_EXE_rdd"))
        .parent()
        .unwrap()
        .join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo build -p limavm-controller -p limactl-standin` first",
        p.display()
    );
    p
}

fn old() -> PathBuf {
    PathBuf::from(KUBECTL_OLD)
}

/// The API server with the supervised limavm-controller, once its three webhooks are
/// registered.
fn start() -> Server {
    sibling("limavm-controller");
    let standin = sibling("limactl-standin");
    let s = Server::start_with_env(
        &["--controllers=limavm"],
        &[("RDD_LIMACTL", standin.to_str().unwrap())],
    );
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let m = s.kubectl_with(
            &old(),
            &["get", "mutatingwebhookconfiguration", "limavm-defaulter"],
        );
        let v = s.kubectl_with(
            &old(),
            &[
                "get",
                "validatingwebhookconfiguration",
                "limavm-validator",
                "limavm-configmap-validator",
            ],
        );
        if m.status.success() && v.status.success() {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "limavm-controller did not register its webhooks: {}",
            String::from_utf8_lossy(&v.stderr)
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    s
}

/// `kubectl <args> -f -` with a JSON document; (success, stdout, stderr).
fn with_input(s: &Server, k: &Path, args: &[&str], doc: &Value) -> (bool, String, String) {
    let mut all: Vec<&str> = args.to_vec();
    all.extend(["-f", "-"]);
    let o = s.apply_stdin(k, &all, &doc.to_string());
    (
        o.status.success(),
        String::from_utf8_lossy(&o.stdout).into_owned(),
        String::from_utf8_lossy(&o.stderr).into_owned(),
    )
}

fn accepted(s: &Server, args: &[&str], doc: &Value) {
    let (ok, out, err) = with_input(s, &old(), args, doc);
    assert!(ok, "kubectl {args:?} refused: {out}\n{err}");
}

/// Refused by kubectl with a message containing every `want`; returns stderr.
fn refused(s: &Server, k: &Path, args: &[&str], doc: &Value, want: &[&str]) -> String {
    let (ok, out, err) = with_input(s, k, args, doc);
    assert!(!ok, "kubectl {args:?} unexpectedly succeeded: {out}");
    for w in want {
        assert!(err.contains(w), "{w:?} not in: {err}");
    }
    err
}

fn refused_args(s: &Server, k: &Path, args: &[&str], want: &[&str]) -> String {
    let o = s.kubectl_with(k, args);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    assert!(
        !o.status.success(),
        "kubectl {args:?} unexpectedly succeeded: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    for w in want {
        assert!(err.contains(w), "{w:?} not in: {err}");
    }
    err
}

/// `kubectl get <what> -o json`, or None when it does not exist.
fn get(s: &Server, what: &[&str]) -> Option<Value> {
    let mut args = vec!["get"];
    args.extend(what);
    args.extend(["-o", "json"]);
    let o = s.kubectl_with(&old(), &args);
    if !o.status.success() {
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("NotFound") || err.contains("not found"),
            "{err}"
        );
        return None;
    }
    Some(serde_json::from_slice(&o.stdout).unwrap())
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn namespace(name: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": name}})
}

fn source(name: &str, ns: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": ns}, "data": data})
}

fn template_cm(name: &str, data: Value) -> Value {
    json!({"apiVersion": "v1", "kind": "ConfigMap",
           "metadata": {"name": name, "namespace": "default", "labels": {LABEL: "true"}},
           "data": data})
}

fn vm(name: &str, ns: &str, template: &str, template_ns: Option<&str>) -> Value {
    let mut tref = json!({"name": template});
    if let Some(t) = template_ns {
        tref["namespace"] = json!(t);
    }
    json!({"apiVersion": "lima.rancherdesktop.io/v1alpha1", "kind": "LimaVM",
           "metadata": {"name": name, "namespace": ns},
           "spec": {"templateRef": tref, "running": false}})
}

fn finalizers(v: &Value) -> Vec<String> {
    v.pointer("/metadata/finalizers")
        .and_then(Value::as_array)
        .map(|a| {
            a.iter()
                .filter_map(|f| f.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default()
}

/// A source template ConfigMap `src` in `default` and a LimaVM made from it.
fn vm_with_source(s: &Server, name: &str) {
    if get(s, &["cm", "src", "-n", "default"]).is_none() {
        accepted(
            s,
            &["create"],
            &source("src", "default", json!({"template": GOOD})),
        );
    }
    accepted(s, &["create"], &vm(name, "default", "src", None));
}

/// CRD rule (resources.md §2.2): `spec.templateRef` is immutable (`self == oldSelf`).
#[test]
fn limavm_rule_templateref_is_immutable() {
    let s = start();
    vm_with_source(&s, "fixed");
    accepted(
        &s,
        &["create"],
        &source("other", "default", json!({"template": GOOD})),
    );
    // Violated: a new templateRef, by patch (both kubectl versions) and by apply.
    for k in [old(), kubectl_new()] {
        refused_args(
            &s,
            &k,
            &[
                "patch",
                "limavm",
                "fixed",
                "--type=merge",
                "-p",
                r#"{"spec":{"templateRef":{"name":"other"}}}"#,
            ],
            &["templateRef is immutable", "spec.templateRef"],
        );
    }
    refused(
        &s,
        &old(),
        &["apply", "--server-side", "--force-conflicts"],
        &vm("fixed", "default", "src", Some("kube-public")),
        &["templateRef is immutable"],
    );
    // Satisfied: other fields change, the templateRef stays.
    let o = s.ok(
        &old(),
        &[
            "patch",
            "limavm",
            "fixed",
            "--type=merge",
            "-p",
            r#"{"spec":{"running":false},"metadata":{"labels":{"x":"y"}}}"#,
        ],
    );
    assert!(o.contains("patched"), "{o}");
    let v = get(&s, &["limavm", "fixed", "-n", "default"]).unwrap();
    assert_eq!(v["spec"]["templateRef"], json!({"name": "src"}));
    assert_eq!(v["metadata"]["labels"]["x"], "y");
}

/// limavm-defaulter (1): the cleanup finalizer is added on create, once.
#[test]
fn limavm_defaulter_rule_adds_the_cleanup_finalizer() {
    let s = start();
    // Without the finalizer (the rule would be violated): it is added.
    vm_with_source(&s, "plain");
    let v = get(&s, &["limavm", "plain", "-n", "default"]).unwrap();
    assert_eq!(finalizers(&v), [CLEANUP]);
    // Already there, next to another one: kept once, the other one kept.
    let mut both = vm("both", "default", "src", None);
    both["metadata"]["finalizers"] = json!(["example.com/keep", CLEANUP]);
    accepted(&s, &["create"], &both);
    let v = get(&s, &["limavm", "both", "-n", "default"]).unwrap();
    assert_eq!(finalizers(&v), ["example.com/keep", CLEANUP]);
}

/// limavm-defaulter (2): a LimaVM name is unique across all namespaces, also while the other
/// one is terminating.
#[test]
fn limavm_defaulter_rule_names_are_unique_across_namespaces() {
    let s = start();
    accepted(&s, &["create"], &namespace("team"));
    let mut first = vm("shared", "default", "src", None);
    first["metadata"]["finalizers"] = json!(["example.com/hold"]);
    accepted(
        &s,
        &["create"],
        &source("src", "default", json!({"template": GOOD})),
    );
    accepted(&s, &["create"], &first);
    let want = [
        "admission webhook \"limavm-defaulter.lima.rancherdesktop.io\" denied the request",
        "LimaVM name \"shared\" is already used in namespace \"default\"; LimaVM names must be unique across all namespaces",
    ];
    // Violated: the same name in another namespace (also in a server-side dry run).
    for (k, extra) in [(old(), None), (kubectl_new(), Some("--dry-run=server"))] {
        let mut args = vec!["create"];
        args.extend(extra);
        refused(
            &s,
            &k,
            &args,
            &vm("shared", "team", "src", Some("default")),
            &want,
        );
    }
    // Still violated while the first one is terminating (held by its finalizer).
    s.ok(
        &old(),
        &[
            "delete",
            "limavm",
            "shared",
            "-n",
            "default",
            "--wait=false",
        ],
    );
    let v = get(&s, &["limavm", "shared", "-n", "default"]).unwrap();
    assert!(v["metadata"]["deletionTimestamp"].is_string());
    refused(
        &s,
        &old(),
        &["create"],
        &vm("shared", "team", "src", Some("default")),
        &want,
    );
    assert!(get(&s, &["limavm", "shared", "-n", "team"]).is_none());
    assert!(
        get(&s, &["cm", "shared-template", "-n", "team"]).is_none(),
        "a refused create leaves no template copy"
    );
    // Satisfied: another name in that namespace; the same name once the first one is gone.
    accepted(&s, &["create"], &vm("own", "team", "src", Some("default")));
    s.ok(
        &old(),
        &[
            "patch",
            "limavm",
            "shared",
            "-n",
            "default",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/metadata/finalizers/0"}]"#,
        ],
    );
    wait_for("the first LimaVM gone", || {
        get(&s, &["limavm", "shared", "-n", "default"]).is_none()
    });
    accepted(
        &s,
        &["create"],
        &vm("shared", "team", "src", Some("default")),
    );
}

/// limavm-defaulter (3): the templateRef ConfigMap is read at admission; a missing one refuses
/// the LimaVM.
#[test]
fn limavm_defaulter_rule_templateref_configmap_must_exist() {
    let s = start();
    accepted(&s, &["create"], &namespace("templates"));
    // Violated: no such ConfigMap (in the VM's namespace, and in the one templateRef names).
    refused(
        &s,
        &old(),
        &["create"],
        &vm("novm", "default", "missing", None),
        &[
            "failed to fetch template data: failed to get templateRef ConfigMap \"missing\" in namespace \"default\": ",
        ],
    );
    refused(
        &s,
        &kubectl_new(),
        &["apply"],
        &vm("novm", "default", "missing", Some("templates")),
        &["failed to get templateRef ConfigMap \"missing\" in namespace \"templates\""],
    );
    assert!(get(&s, &["limavm", "novm", "-n", "default"]).is_none());
    // Satisfied: the ConfigMap exists in the namespace templateRef names.
    accepted(
        &s,
        &["create"],
        &source("tpl", "templates", json!({"template": GOOD})),
    );
    accepted(
        &s,
        &["create"],
        &vm("novm", "default", "tpl", Some("templates")),
    );
    let copy = get(&s, &["cm", "novm-template", "-n", "default"]).unwrap();
    assert_eq!(copy["data"]["template"], GOOD);
}

/// limavm-defaulter (4): the template is copied into `<name>-template` (label, owned-by-LimaVM
/// finalizer, exact data); a dry run copies in dry run, so nothing is left behind.
#[test]
fn limavm_defaulter_rule_copies_the_template_and_a_dry_run_copies_nothing() {
    let s = start();
    let text =
        "# exact bytes\nimages:\n- location: https://example.invalid/b.raw.xz\n  arch: aarch64\n\n";
    accepted(
        &s,
        &["create"],
        &source("src", "default", json!({"template": text})),
    );
    // A server-side dry run admits the VM but stores neither it nor a copy.
    let (ok, out, err) = with_input(
        &s,
        &kubectl_new(),
        &["create", "--dry-run=server", "-o", "json"],
        &vm("copied", "default", "src", None),
    );
    assert!(ok, "{out}\n{err}");
    let dry: Value = serde_json::from_str(&out).unwrap();
    assert_eq!(finalizers(&dry), [CLEANUP], "the dry run is mutated too");
    assert!(get(&s, &["limavm", "copied", "-n", "default"]).is_none());
    assert!(get(&s, &["cm", "copied-template", "-n", "default"]).is_none());
    // The real create copies.
    accepted(&s, &["create"], &vm("copied", "default", "src", None));
    let copy = get(&s, &["cm", "copied-template", "-n", "default"]).unwrap();
    assert_eq!(copy["data"]["template"], text);
    assert_eq!(copy["metadata"]["labels"][LABEL], "true");
    assert_eq!(finalizers(&copy), [OWNED_BY_LIMAVM]);
    // A source without a `template` key is copied as an empty template, which the template
    // ConfigMap validator then refuses: the LimaVM is not created.
    accepted(
        &s,
        &["create"],
        &source("keyless", "default", json!({"other": "x"})),
    );
    refused(
        &s,
        &old(),
        &["create"],
        &vm("keyless", "default", "keyless", None),
        &["data cannot be empty"],
    );
    assert!(get(&s, &["limavm", "keyless", "-n", "default"]).is_none());
    assert!(get(&s, &["cm", "keyless-template", "-n", "default"]).is_none());
}

/// limavm-validator: a LimaVM holding an `owned-by-<Kind>` finalizer cannot be deleted (dry
/// runs included); without one it can.
#[test]
fn limavm_validator_rule_owned_limavm_cannot_be_deleted() {
    let s = start();
    accepted(
        &s,
        &["create"],
        &source("src", "default", json!({"template": GOOD})),
    );
    let mut owned = vm("owned", "default", "src", None);
    owned["metadata"]["finalizers"] = json!(["rdd.rancherdesktop.io/owned-by-App"]);
    accepted(&s, &["create"], &owned);
    let want = [
        "admission webhook \"limavm-validator.lima.rancherdesktop.io\" denied the request",
        "cannot delete \"owned\": owned by App; delete the App resource instead",
    ];
    // Violated.
    for (k, dry) in [(old(), false), (kubectl_new(), true)] {
        let mut args = vec!["delete", "limavm", "owned", "-n", "default"];
        if dry {
            args.push("--dry-run=server");
        }
        refused_args(&s, &k, &args, &want);
    }
    let v = get(&s, &["limavm", "owned", "-n", "default"]).unwrap();
    assert!(v["metadata"]["deletionTimestamp"].is_null());
    // Satisfied: once the owner lets go, the delete goes through and the controller cleans up.
    s.ok(
        &old(),
        &[
            "patch",
            "limavm",
            "owned",
            "-n",
            "default",
            "--type=json",
            "-p",
            r#"[{"op":"test","path":"/metadata/finalizers/0","value":"rdd.rancherdesktop.io/owned-by-App"},{"op":"remove","path":"/metadata/finalizers/0"}]"#,
        ],
    );
    s.ok(
        &old(),
        &[
            "delete",
            "limavm",
            "owned",
            "-n",
            "default",
            "--timeout=30s",
        ],
    );
    assert!(get(&s, &["limavm", "owned", "-n", "default"]).is_none());
    wait_for("the template copy removed by the controller", || {
        get(&s, &["cm", "owned-template", "-n", "default"]).is_none()
    });
}

/// limavm-configmap-validator: a template ConfigMap needs a `template` entry.
#[test]
fn template_configmap_validator_rule_template_entry_required() {
    let s = start();
    let want = [
        "admission webhook \"limavm-configmap-validator.lima.rancherdesktop.io\" denied the request",
        "template ConfigMap must have a \"template\" data entry",
    ];
    refused(
        &s,
        &old(),
        &["create"],
        &template_cm("t", json!({"other": "x"})),
        &want,
    );
    refused(
        &s,
        &kubectl_new(),
        &["apply", "--server-side"],
        &template_cm("t", json!({})),
        &want,
    );
    accepted(
        &s,
        &["create"],
        &template_cm("t", json!({"template": GOOD})),
    );
    // Taking it away on update is refused too.
    refused_args(
        &s,
        &old(),
        &[
            "patch",
            "cm",
            "t",
            "--type=json",
            "-p",
            r#"[{"op":"remove","path":"/data/template"}]"#,
        ],
        &want,
    );
    // An unlabelled ConfigMap is not a template ConfigMap.
    accepted(
        &s,
        &["create"],
        &source("plain", "default", json!({"other": "x"})),
    );
}

/// limavm-configmap-validator: the template must not be empty.
#[test]
fn template_configmap_validator_rule_template_not_empty() {
    let s = start();
    let want = ["\"template\" data cannot be empty"];
    refused(
        &s,
        &old(),
        &["create"],
        &template_cm("t", json!({"template": ""})),
        &want,
    );
    accepted(
        &s,
        &["create"],
        &template_cm("t", json!({"template": GOOD})),
    );
    refused_args(
        &s,
        &kubectl_new(),
        &[
            "patch",
            "cm",
            "t",
            "--type=merge",
            "-p",
            r#"{"data":{"template":""}}"#,
        ],
        &want,
    );
}

/// limavm-configmap-validator: the template must parse as YAML.
#[test]
fn template_configmap_validator_rule_template_parses() {
    let s = start();
    let want = ["failed to parse template: "];
    refused(
        &s,
        &old(),
        &["create"],
        &template_cm("t", json!({"template": "images: [unclosed\n"})),
        &want,
    );
    accepted(
        &s,
        &["create"],
        &template_cm("t", json!({"template": "images: []\n"})),
    );
    refused_args(
        &s,
        &old(),
        &[
            "patch",
            "cm",
            "t",
            "--type=merge",
            "-p",
            r#"{"data":{"template":"a: b: c"}}"#,
        ],
        &want,
    );
}

/// limavm-configmap-validator: the template passes `limactl template validate`.
#[test]
fn template_configmap_validator_rule_limactl_template_validate() {
    let s = start();
    let want = [
        "failed to validate template: ",
        "field `arch`",
        "got `cray-1`",
    ];
    for k in [old(), kubectl_new()] {
        refused(
            &s,
            &k,
            &["create"],
            &template_cm("t", json!({"template": "arch: cray-1\n"})),
            &want,
        );
    }
    accepted(
        &s,
        &["create"],
        &template_cm("t", json!({"template": "arch: riscv64\n"})),
    );
    refused_args(
        &s,
        &old(),
        &[
            "patch",
            "cm",
            "t",
            "--type=merge",
            "-p",
            r#"{"data":{"template":"images:\n- location: x\n  arch: cray-1\n"}}"#,
        ],
        &want,
    );
}

/// limavm-configmap-validator: an owned template copy keeps its label.
#[test]
fn template_configmap_validator_rule_owned_copy_keeps_its_label() {
    let s = start();
    vm_with_source(&s, "vm");
    let want = ["cannot remove lima.rancherdesktop.io/template-configmap label: resource is owned"];
    let unlabel = format!(r#"{{"metadata":{{"labels":{{"{LABEL}":null}}}}}}"#);
    for k in [old(), kubectl_new()] {
        refused_args(
            &s,
            &k,
            &["patch", "cm", "vm-template", "--type=merge", "-p", &unlabel],
            &want,
        );
    }
    refused_args(
        &s,
        &old(),
        &["label", "cm", "vm-template", &format!("{LABEL}-")],
        &want,
    );
    let copy = get(&s, &["cm", "vm-template", "-n", "default"]).unwrap();
    assert_eq!(copy["metadata"]["labels"][LABEL], "true");
    // Satisfied: a template ConfigMap nobody owns may drop the label.
    accepted(
        &s,
        &["create"],
        &template_cm("free", json!({"template": GOOD})),
    );
    s.ok(&old(), &["label", "cm", "free", &format!("{LABEL}-")]);
    // An owned copy may change its template to another valid one.
    s.ok(
        &old(),
        &[
            "patch",
            "cm",
            "vm-template",
            "--type=merge",
            "-p",
            r#"{"data":{"template":"arch: aarch64\n"}}"#,
        ],
    );
}

/// limavm-configmap-validator: an owned template copy cannot be deleted on its own; deleting
/// its LimaVM removes it.
#[test]
fn template_configmap_validator_rule_owned_copy_cannot_be_deleted() {
    let s = start();
    vm_with_source(&s, "vm");
    let want = [
        "admission webhook \"limavm-configmap-validator.lima.rancherdesktop.io\" denied the request",
        "cannot delete \"vm-template\": owned by LimaVM; delete the LimaVM resource instead",
    ];
    refused_args(&s, &old(), &["delete", "cm", "vm-template"], &want);
    refused_args(
        &s,
        &kubectl_new(),
        &["delete", "cm", "vm-template", "--dry-run=server"],
        &want,
    );
    assert!(get(&s, &["cm", "vm-template", "-n", "default"]).is_some());
    // Satisfied: an unowned template ConfigMap deletes; the LimaVM takes its copy with it.
    accepted(
        &s,
        &["create"],
        &template_cm("free", json!({"template": GOOD})),
    );
    s.ok(&old(), &["delete", "cm", "free"]);
    s.ok(
        &old(),
        &["delete", "limavm", "vm", "-n", "default", "--timeout=30s"],
    );
    wait_for("the copy removed with its LimaVM", || {
        get(&s, &["cm", "vm-template", "-n", "default"]).is_none()
    });
}
