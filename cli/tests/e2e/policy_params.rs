//! ValidatingAdmissionPolicy parameters (CP-125, AT-52) set up with kubectl apply as on a real
//! cluster: a ConfigMap `paramKind`, bindings whose `paramRef` names one object, takes the
//! request's namespace, or selects several; `parameterNotFoundAction` Allow and Deny; and the
//! policy's failurePolicy for a missing param.

use std::path::{Path, PathBuf};

use crate::harness::{KUBECTL_OLD, Server, kubectl_new};

const POLICY: &str = r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: entry-limit
spec:
  failurePolicy: Fail
  paramKind:
    apiVersion: v1
    kind: ConfigMap
  matchConstraints:
    resourceRules:
    - apiGroups: [""]
      apiVersions: [v1]
      resources: [configmaps]
      operations: [CREATE, UPDATE]
    objectSelector:
      matchLabels:
        checked: "yes"
  validations:
  - expression: "!has(object.data) || size(object.data) <= int(params.data.max)"
    messageExpression: "'at most ' + params.data.max + ' entries (' + params.metadata.name + ')'"
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: by-name
spec:
  policyName: entry-limit
  validationActions: [Deny]
  paramRef:
    name: limits
    namespace: policy
    parameterNotFoundAction: Deny
  matchResources:
    namespaceSelector:
      matchLabels:
        binding: by-name
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: per-namespace
spec:
  policyName: entry-limit
  validationActions: [Deny]
  paramRef:
    name: limits
    parameterNotFoundAction: Allow
  matchResources:
    namespaceSelector:
      matchLabels:
        binding: per-namespace
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: by-selector
spec:
  policyName: entry-limit
  validationActions: [Deny]
  paramRef:
    namespace: policy
    selector:
      matchLabels:
        role: limit
    parameterNotFoundAction: Deny
  matchResources:
    namespaceSelector:
      matchLabels:
        binding: by-selector
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: lenient
spec:
  failurePolicy: Ignore
  paramKind:
    apiVersion: v1
    kind: ConfigMap
  matchConstraints:
    resourceRules:
    - apiGroups: [""]
      apiVersions: [v1]
      resources: [configmaps]
      operations: [CREATE]
    objectSelector:
      matchLabels:
        lenient: "yes"
  validations:
  - expression: "false"
    message: never reached without a param
---
apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicyBinding
metadata:
  name: lenient
spec:
  policyName: lenient
  validationActions: [Deny]
  paramRef:
    name: nowhere
    namespace: policy
    parameterNotFoundAction: Deny
"#;

fn namespaces() -> String {
    ["policy", "by-name", "per-namespace", "by-selector"]
        .iter()
        .map(|n| {
            format!(
                "apiVersion: v1\nkind: Namespace\nmetadata:\n  name: {n}\n  labels:\n    binding: {n}\n"
            )
        })
        .collect::<Vec<_>>()
        .join("---\n")
}

/// A ConfigMap under the policy with `n` entries.
fn checked(name: &str, ns: &str, n: usize) -> String {
    let data: String = (0..n).map(|i| format!("  k{i}: v\n")).collect();
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels:\n    checked: \"yes\"\ndata:\n{data}"
    )
}

fn param(name: &str, ns: &str, max: u32, labels: &str) -> String {
    format!(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\n  namespace: {ns}\n  labels: {{{labels}}}\ndata:\n  max: \"{max}\"\n"
    )
}

fn apply(s: &Server, k: &Path, doc: &str) -> Result<String, String> {
    let o = s.apply_stdin(k, &["apply", "-f", "-"], doc);
    let err = String::from_utf8_lossy(&o.stderr).into_owned();
    if o.status.success() {
        Ok(err)
    } else {
        Err(err)
    }
}

fn denied(s: &Server, k: &Path, doc: &str, want: &[&str]) {
    let err = apply(s, k, doc).expect_err("denied");
    for w in want {
        assert!(err.contains(w), "{w:?} not in: {err}");
    }
}

fn admitted(s: &Server, k: &Path, doc: &str) {
    if let Err(e) = apply(s, k, doc) {
        panic!("refused: {e}");
    }
}

#[test]
fn policy_params_name_namespace_selector_and_not_found_actions() {
    let s = Server::start();
    let old = PathBuf::from(KUBECTL_OLD);
    let new = kubectl_new();
    admitted(&s, &old, &namespaces());
    admitted(&s, &old, POLICY);

    // by-name: the param is missing and the action is Deny → failurePolicy Fail denies.
    for k in [&old, &new] {
        denied(
            &s,
            k,
            &checked("a", "by-name", 1),
            &[
                "ValidatingAdmissionPolicy 'entry-limit' with binding 'by-name' denied request",
                "failed to configure binding: no params found for policy binding with `Deny` parameterNotFoundAction",
            ],
        );
    }
    // Once the named param exists, its value decides.
    admitted(&s, &old, &param("limits", "policy", 2, ""));
    for k in [&old, &new] {
        denied(
            &s,
            k,
            &checked("a", "by-name", 3),
            &["denied request: at most 2 entries (limits)"],
        );
    }
    admitted(&s, &new, &checked("a", "by-name", 2));
    // The param is read at each request: raising the limit admits the update.
    admitted(&s, &old, &param("limits", "policy", 5, ""));
    admitted(&s, &old, &checked("a", "by-name", 4));
    // A server-side dry run is judged the same way.
    let o = s.apply_stdin(
        &old,
        &["apply", "--dry-run=server", "-f", "-"],
        &checked("a", "by-name", 9),
    );
    assert!(!o.status.success(), "dry run must see the denial");

    // per-namespace: paramRef without a namespace reads `limits` in the request's namespace;
    // none there and the action is Allow → admitted.
    admitted(&s, &old, &checked("b", "per-namespace", 9));
    admitted(&s, &old, &param("limits", "per-namespace", 1, ""));
    denied(
        &s,
        &new,
        &checked("b2", "per-namespace", 2),
        &["with binding 'per-namespace' denied request: at most 1 entries (limits)"],
    );
    // (the param itself carries no `checked` label, so the policy does not judge it)

    // by-selector: no object matches → Deny; every matching param is evaluated, all must pass.
    denied(
        &s,
        &old,
        &checked("c", "by-selector", 1),
        &["with binding 'by-selector'", "no params found"],
    );
    admitted(&s, &old, &param("loose", "policy", 3, "role: limit"));
    admitted(&s, &old, &checked("c", "by-selector", 2));
    admitted(&s, &old, &param("tight", "policy", 1, "role: limit"));
    denied(
        &s,
        &new,
        &checked("c2", "by-selector", 2),
        &["at most 1 entries (tight)"],
    );
    s.ok(&old, &["delete", "configmap", "tight", "-n", "policy"]);
    admitted(&s, &new, &checked("c2", "by-selector", 2));

    // failurePolicy Ignore: a missing param (action Deny) does not block.
    admitted(
        &s,
        &old,
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: l\n  labels:\n    lenient: \"yes\"\n",
    );
    // Objects no binding matches are untouched.
    admitted(&s, &old, &checked("d", "default", 9));
}

/// Misconfigured bindings follow the policy's failurePolicy: a paramKind that is not served, a
/// namespaced paramKind without a namespace for a cluster-scoped request, no paramRef at all.
#[test]
fn policy_params_misconfigured_bindings_fail_closed() {
    let s = Server::start();
    let old = PathBuf::from(KUBECTL_OLD);
    let policy = |name: &str, kind: &str, resource: &str, group: &str| {
        format!(
            r#"apiVersion: admissionregistration.k8s.io/v1
kind: ValidatingAdmissionPolicy
metadata:
  name: {name}
spec:
  paramKind:
    apiVersion: v1
    kind: {kind}
  matchConstraints:
    resourceRules:
    - apiGroups: ["{group}"]
      apiVersions: [v1]
      resources: [{resource}]
      operations: [CREATE]
  validations:
  - expression: "true"
"#
        )
    };
    let binding = |name: &str, param_ref: &str| {
        format!(
            "apiVersion: admissionregistration.k8s.io/v1\nkind: ValidatingAdmissionPolicyBinding\nmetadata:\n  name: {name}\nspec:\n  policyName: {name}\n  validationActions: [Deny]\n{param_ref}"
        )
    };
    admitted(&s, &old, &policy("unserved", "Frobnicator", "secrets", ""));
    admitted(
        &s,
        &old,
        &binding(
            "unserved",
            "  paramRef:\n    name: x\n    parameterNotFoundAction: Allow\n",
        ),
    );
    let err = s.fails(&old, &["create", "secret", "generic", "s1"]);
    assert!(
        err.contains("failed to find resource referenced by paramKind: 'v1, Kind=Frobnicator'"),
        "{err}"
    );
    admitted(
        &s,
        &old,
        &policy("cluster-request", "ConfigMap", "namespaces", ""),
    );
    admitted(
        &s,
        &old,
        &binding(
            "cluster-request",
            "  paramRef:\n    name: x\n    parameterNotFoundAction: Allow\n",
        ),
    );
    let err = s.fails(&old, &["create", "namespace", "n1"]);
    assert!(
        err.contains("cannot use a namespaced paramKind without paramRef.namespace"),
        "{err}"
    );
    admitted(
        &s,
        &old,
        &policy("no-ref", "ConfigMap", "serviceaccounts", ""),
    );
    admitted(&s, &old, &binding("no-ref", ""));
    let err = s.fails(&old, &["create", "serviceaccount", "sa1"]);
    assert!(err.contains("has no paramRef"), "{err}");
}
