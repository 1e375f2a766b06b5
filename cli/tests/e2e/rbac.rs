//! RBAC enforcement through real clients: token identities minted with `rdd svc token`, Roles
//! and bindings written by the admin, 403s worded as upstream, `kubectl auth can-i [--list]`,
//! ServiceAccounts, rdd's per-controller identities from `deploy/rbac`, and escalation checks.

use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::harness::{KUBECTL_OLD, Server, kubectl_new, repo_root};

/// Run the `rdd` binary against the test server's instance.
fn rdd(s: &Server, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rdd"))
        .args(args)
        .env("HOME", s.home.path())
        .env("RDD_INSTANCE", "e2e")
        .output()
        .unwrap()
}

/// A kubeconfig for a new token of `who` (`--user alice`, `--controller x`, ...).
pub(crate) fn token_kubeconfig(s: &Server, file: &str, who: &[&str]) -> PathBuf {
    let path = s.home.path().join(file);
    let mut args = vec![
        "svc",
        "token",
        "create",
        "--kubeconfig",
        path.to_str().unwrap(),
    ];
    args.extend(who);
    let o = rdd(s, &args);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    path
}

fn kubectl(bin: &Path, kc: &Path, args: &[&str], stdin: Option<&str>) -> Output {
    use std::io::Write;
    let mut c = Command::new(bin)
        .args(args)
        .env("KUBECONFIG", kc)
        .env("HOME", kc.parent().unwrap())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = c.stdin.take().unwrap();
    input.write_all(stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    c.wait_with_output().unwrap()
}

fn ok(bin: &Path, kc: &Path, args: &[&str]) -> String {
    let o = kubectl(bin, kc, args, None);
    assert!(
        o.status.success(),
        "{args:?} failed: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8_lossy(&o.stdout).into_owned()
}

/// Run kubectl expecting it to be refused; return stderr.
fn refused(bin: &Path, kc: &Path, args: &[&str]) -> String {
    let o = kubectl(bin, kc, args, None);
    assert!(
        !o.status.success(),
        "{args:?} unexpectedly succeeded: {}",
        String::from_utf8_lossy(&o.stdout)
    );
    String::from_utf8_lossy(&o.stderr).into_owned()
}

pub(crate) fn apply(s: &Server, yaml: &str) {
    let o = s.apply_stdin(Path::new(KUBECTL_OLD), &["apply", "-f", "-"], yaml);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}

/// The token in a kubeconfig written by `rdd svc token create`.
fn token_of(kc: &Path) -> String {
    let v: serde_json::Value = serde_json::from_slice(&std::fs::read(kc).unwrap()).unwrap();
    v["users"][0]["user"]["token"].as_str().unwrap().to_string()
}

/// `curl` with a bearer token: (status, body as JSON).
fn curl(s: &Server, token: &str, method: &str, path: &str) -> (u16, serde_json::Value) {
    let out = Command::new("curl")
        .args(["-s", "-X", method, "-w", "\n%{http_code}", "--cacert"])
        .arg(s.dir().join("tls/ca.crt"))
        .args(["-H", &format!("Authorization: Bearer {token}")])
        .arg(format!("https://127.0.0.1:{}{path}", s.port()))
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout).into_owned();
    let (body, code) = text.rsplit_once('\n').unwrap();
    (
        code.parse().unwrap(),
        serde_json::from_str(body).unwrap_or(serde_json::Value::Null),
    )
}

/// Poll until `path` answers `want` for `token`; return how long that took.
fn until_code(s: &Server, token: &str, path: &str, want: u16) -> Duration {
    let start = Instant::now();
    loop {
        let (code, _) = curl(s, token, "GET", path);
        if code == want {
            return start.elapsed();
        }
        assert!(
            start.elapsed() < Duration::from_secs(5),
            "{path} still {code}, want {want}"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

const TEAM: &str = r#"
apiVersion: v1
kind: Namespace
metadata: {name: team}
---
apiVersion: v1
kind: Namespace
metadata: {name: other}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: team}
data: {a: "1"}
---
apiVersion: v1
kind: ConfigMap
metadata: {name: settings, namespace: other}
---
apiVersion: rbac.authorization.k8s.io/v1
kind: Role
metadata: {name: cm-reader, namespace: team}
rules:
- apiGroups: [""]
  resources: [configmaps]
  verbs: [get, list, watch]
"#;

const ALICE_BINDING: &str = r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: alice-reads, namespace: team}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: cm-reader}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: alice}
- {kind: ServiceAccount, name: robot}
"#;

/// The acceptance case: a token bound to a Role that only reads configmaps in one namespace
/// gets 403 on everything else, and `kubectl auth can-i [--list]` tells it so.
#[test]
fn rbac_configmap_reader_gets_403_elsewhere_and_can_i_is_right() {
    let s = Server::start();
    apply(&s, TEAM);
    apply(&s, ALICE_BINDING);
    let alice = token_kubeconfig(&s, "alice.yaml", &["--user", "alice", "--group", "devs"]);
    for k in [PathBuf::from(KUBECTL_OLD), kubectl_new()] {
        let who = ok(&k, &alice, &["auth", "whoami"]);
        assert!(
            who.contains("alice") && who.contains("system:authenticated"),
            "{who}"
        );
        assert!(ok(&k, &alice, &["get", "cm", "-n", "team"]).contains("settings"));
        assert_eq!(
            ok(
                &k,
                &alice,
                &[
                    "get",
                    "cm",
                    "settings",
                    "-n",
                    "team",
                    "-o",
                    "jsonpath={.data.a}"
                ]
            ),
            "1"
        );
        let expect = [
            (
                vec!["get", "cm", "-n", "other"],
                r#"configmaps is forbidden: User "alice" cannot list resource "configmaps" in API group "" in the namespace "other""#,
            ),
            (
                vec!["get", "cm", "-A"],
                r#"configmaps is forbidden: User "alice" cannot list resource "configmaps" in API group "" at the cluster scope"#,
            ),
            (
                vec!["get", "secrets", "-n", "team"],
                r#"secrets is forbidden: User "alice" cannot list resource "secrets" in API group "" in the namespace "team""#,
            ),
            (
                vec!["delete", "cm", "settings", "-n", "team"],
                r#"configmaps "settings" is forbidden: User "alice" cannot delete resource "configmaps" in API group "" in the namespace "team""#,
            ),
            (
                vec!["create", "cm", "new", "-n", "team"],
                r#"configmaps is forbidden: User "alice" cannot create resource "configmaps" in API group "" in the namespace "team""#,
            ),
            (
                vec!["label", "cm", "settings", "-n", "team", "x=y"],
                r#"configmaps "settings" is forbidden: User "alice" cannot patch resource "configmaps" in API group "" in the namespace "team""#,
            ),
            (
                vec!["get", "namespaces"],
                r#"namespaces is forbidden: User "alice" cannot list resource "namespaces" in API group "" at the cluster scope"#,
            ),
            (
                vec!["get", "roles", "-n", "team"],
                r#"roles.rbac.authorization.k8s.io is forbidden: User "alice" cannot list resource "roles" in API group "rbac.authorization.k8s.io" in the namespace "team""#,
            ),
        ];
        for (args, msg) in &expect {
            let err = refused(&k, &alice, args);
            assert!(err.contains(msg), "{args:?}: {err}");
        }
        // can-i: the reads in team, nothing elsewhere.
        for (args, want) in [
            (vec!["get", "configmaps", "-n", "team"], "yes"),
            (vec!["watch", "configmaps/settings", "-n", "team"], "yes"),
            (vec!["create", "configmaps", "-n", "team"], "no"),
            (vec!["get", "configmaps", "-n", "other"], "no"),
            (vec!["get", "secrets", "-n", "team"], "no"),
            (vec!["get", "/api"], "yes"),
            (vec!["get", "/metrics"], "no"),
        ] {
            let mut a = vec!["auth", "can-i"];
            a.extend(&args);
            let o = kubectl(&k, &alice, &a, None);
            assert_eq!(
                String::from_utf8_lossy(&o.stdout).trim(),
                want,
                "can-i {args:?}: {}",
                String::from_utf8_lossy(&o.stderr)
            );
            assert_eq!(o.status.success(), want == "yes");
        }
        let list = ok(&k, &alice, &["auth", "can-i", "--list", "-n", "team"]);
        let line = |name: &str| {
            list.lines()
                .find(|l| l.split_whitespace().next() == Some(name))
                .unwrap_or_else(|| panic!("no {name} in\n{list}"))
                .to_string()
        };
        assert!(line("configmaps").ends_with("[get list watch]"), "{list}");
        assert!(line("selfsubjectaccessreviews.authorization.k8s.io").ends_with("[create]"));
        assert!(line("selfsubjectrulesreviews.authorization.k8s.io").ends_with("[create]"));
        assert!(
            list.contains("[/api/*]") && list.contains("[/healthz]"),
            "{list}"
        );
        assert!(
            !list.contains("*.*") && !list.contains("secrets"),
            "nothing more: {list}"
        );
        let other = ok(&k, &alice, &["auth", "can-i", "--list", "-n", "other"]);
        assert!(!other.contains("configmaps"), "{other}");
    }
    // The 403 body is a Status naming what was missing.
    let token = token_of(&alice);
    let (code, st) = curl(&s, &token, "GET", "/api/v1/namespaces/team/secrets/x");
    assert_eq!(code, 403);
    assert_eq!(st["kind"], "Status");
    assert_eq!(st["reason"], "Forbidden");
    assert_eq!(st["code"], 403);
    assert_eq!(
        st["details"],
        serde_json::json!({"name": "x", "kind": "secrets"})
    );
    assert_eq!(
        st["message"],
        r#"secrets "x" is forbidden: User "alice" cannot get resource "secrets" in API group "" in the namespace "team""#
    );
    let (code, st) = curl(&s, &token, "GET", "/metrics");
    assert_eq!(
        (code, st["message"].as_str()),
        (
            403,
            Some(r#"forbidden: User "alice" cannot get path "/metrics""#)
        )
    );
    // Resource types that do not exist are refused the same way: nothing leaks.
    let (code, _) = curl(&s, &token, "GET", "/apis/nope.example/v1/things");
    assert_eq!(code, 403);
    // Health and version stay public, without and with credentials.
    assert_eq!(curl(&s, &token, "GET", "/readyz").0, 200);
    assert_eq!(curl(&s, "", "GET", "/version").0, 200);

    // A ServiceAccount identity, named by the same RoleBinding without a namespace.
    let robot = token_kubeconfig(&s, "robot.yaml", &["--service-account", "team/robot"]);
    let k = PathBuf::from(KUBECTL_OLD);
    let who = ok(&k, &robot, &["auth", "whoami"]);
    for g in [
        "system:serviceaccount:team:robot",
        "system:serviceaccounts:team",
        "system:serviceaccounts",
    ] {
        assert!(who.contains(g), "{who}");
    }
    assert!(ok(&k, &robot, &["get", "cm", "-n", "team"]).contains("settings"));
    let err = refused(&k, &robot, &["get", "cm", "-n", "other"]);
    assert!(
        err.contains(r#"User "system:serviceaccount:team:robot" cannot list"#),
        "{err}"
    );
    let other_sa = token_kubeconfig(&s, "other-sa.yaml", &["--service-account", "other/robot"]);
    refused(&k, &other_sa, &["get", "cm", "-n", "team"]);

    // Impersonation: the admin may act as anyone (`kubectl --as`), alice may not.
    let admin = s.kubeconfig();
    let err = refused(&k, &admin, &["--as", "alice", "get", "cm", "-n", "other"]);
    assert!(
        err.contains(r#"User "alice" cannot list resource "configmaps""#),
        "{err}"
    );
    assert!(ok(&k, &admin, &["--as", "alice", "get", "cm", "-n", "team"]).contains("settings"));
    let who = ok(
        &k,
        &admin,
        &["--as", "system:serviceaccount:team:robot", "auth", "whoami"],
    );
    assert!(who.contains("system:serviceaccounts:team"), "{who}");
    let who = ok(
        &k,
        &admin,
        &["--as", "carol", "--as-group", "devs", "auth", "whoami"],
    );
    assert!(
        who.contains("carol") && who.contains("devs") && !who.contains("system:masters"),
        "{who}"
    );
    let err = refused(&k, &alice, &["--as", "bob", "get", "cm", "-n", "team"]);
    assert!(
        err.contains(r#"users "bob" is forbidden: User "alice" cannot impersonate resource "users" in API group "" at the cluster scope"#),
        "{err}"
    );

    // Binding changes take effect within a second.
    let cms = "/api/v1/namespaces/team/configmaps";
    assert_eq!(curl(&s, &token, "GET", cms).0, 200);
    s.ok(&k, &["delete", "rolebinding", "alice-reads", "-n", "team"]);
    let took = until_code(&s, &token, cms, 403);
    assert!(took < Duration::from_secs(1), "revocation took {took:?}");
    apply(&s, ALICE_BINDING);
    let took = until_code(&s, &token, cms, 200);
    assert!(took < Duration::from_secs(1), "grant took {took:?}");
    // So do Role changes: dropping `list` from the role.
    apply(
        &s,
        &TEAM.replace("verbs: [get, list, watch]", "verbs: [get]"),
    );
    let took = until_code(&s, &token, cms, 403);
    assert!(took < Duration::from_secs(1), "role change took {took:?}");
    assert_eq!(curl(&s, &token, "GET", &format!("{cms}/settings")).0, 200);

    // Revoked tokens stop authenticating within a second.
    let o = rdd(&s, &["svc", "token", "revoke", "--user", "alice"]);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let took = until_code(&s, &token, cms, 401);
    assert!(took < Duration::from_secs(2), "revocation took {took:?}");

    // The admin kubeconfig (system:masters) still does everything.
    let admin = s.kubeconfig();
    assert_eq!(ok(&k, &admin, &["auth", "can-i", "*", "*"]).trim(), "yes");
    ok(&k, &admin, &["get", "secrets", "-A"]);
    assert!(ok(&k, &admin, &["get", "clusterroles"]).contains("system:discovery"));
}

const APP: &str = "apiVersion: app.rancherdesktop.io/v1alpha1\nkind: App\nmetadata:\n  name: app\nspec:\n  running: false\n";

/// `rdd svc serve` ensures the identities of `deploy/rbac`; a controller's token gets only
/// what its manifest declares: the image-controller cannot touch Apps beyond their status.
#[test]
fn rbac_controller_identities_are_least_privilege() {
    let s = Server::start();
    let k = PathBuf::from(KUBECTL_OLD);
    let admin = s.kubeconfig();
    let crds = repo_root().join("deploy/crds");
    ok(&k, &admin, &["apply", "-f", crds.to_str().unwrap()]);
    ok(
        &k,
        &admin,
        &[
            "wait",
            "--for=condition=Established",
            "crd",
            "--all",
            "--timeout=20s",
        ],
    );
    apply(&s, APP);
    // Every controller of deploy/rbac has its ServiceAccount and role.
    let sas = ok(&k, &admin, &["get", "sa", "-n", "rdd-system", "-o", "name"]);
    for c in [
        "app-controller",
        "limavm-controller",
        "container-controller",
        "image-controller",
        "volume-controller",
    ] {
        assert!(sas.contains(&format!("serviceaccount/{c}")), "{sas}");
        ok(&k, &admin, &["get", "clusterrole", &format!("rdd:{c}")]);
    }
    let ic = token_kubeconfig(&s, "ic.yaml", &["--controller", "image-controller"]);
    let user = "system:serviceaccount:rdd-system:image-controller";
    let who = ok(&k, &ic, &["auth", "whoami"]);
    assert!(
        who.contains(user) && who.contains("system:serviceaccounts:rdd-system"),
        "{who}"
    );
    // Reads Apps, writes Images, patches App status; nothing else about Apps.
    assert!(ok(&k, &ic, &["get", "apps"]).contains("app"));
    let img = format!("sha256-{}", "b".repeat(64));
    let o = kubectl(
        &k,
        &ic,
        &["apply", "--server-side", "-f", "-"],
        Some(&format!(
            "apiVersion: containers.rancherdesktop.io/v1alpha1\nkind: Image\nmetadata:\n  name: {img}\n  namespace: default\n"
        )),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    // Server-side apply of its own condition, as the controller writes it (its role has no
    // `get` on apps/status, which `kubectl patch` would read first).
    let o = kubectl(
        &k,
        &ic,
        &[
            "apply",
            "--server-side",
            "--field-manager=image-controller",
            "--subresource=status",
            "-f",
            "-",
        ],
        Some(
            "apiVersion: app.rancherdesktop.io/v1alpha1\nkind: App\nmetadata:\n  name: app\nstatus:\n  conditions:\n  - type: ImagesSynced\n    status: \"False\"\n    reason: Stopped\n    message: Container engine stopped\n    lastTransitionTime: \"2026-01-01T00:00:00Z\"\n",
        ),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for (args, msg) in [
        (
            vec![
                "patch",
                "app",
                "app",
                "--type=merge",
                "-p",
                r#"{"spec":{"running":true}}"#,
            ],
            format!(
                r#"apps.app.rancherdesktop.io "app" is forbidden: User "{user}" cannot patch resource "apps" in API group "app.rancherdesktop.io" at the cluster scope"#
            ),
        ),
        (
            vec!["delete", "app", "app"],
            format!(
                r#"apps.app.rancherdesktop.io "app" is forbidden: User "{user}" cannot delete resource "apps" in API group "app.rancherdesktop.io" at the cluster scope"#
            ),
        ),
        (
            vec!["get", "limavms", "-A"],
            format!(
                r#"limavms.lima.rancherdesktop.io is forbidden: User "{user}" cannot list resource "limavms" in API group "lima.rancherdesktop.io" at the cluster scope"#
            ),
        ),
        (
            vec!["get", "containers", "-A"],
            format!(
                r#"containers.containers.rancherdesktop.io is forbidden: User "{user}" cannot list resource "containers""#
            ),
        ),
        (
            vec!["get", "configmaps", "-n", "default"],
            r#"cannot list resource "configmaps" in API group "" in the namespace "default""#
                .to_string(),
        ),
    ] {
        let err = refused(&k, &ic, &args);
        assert!(err.contains(&msg), "{args:?}: {err}");
    }
    for (args, want) in [
        (vec!["patch", "apps"], "no"),
        (vec!["patch", "apps", "--subresource=status"], "yes"),
        (vec!["create", "images", "-n", "default"], "yes"),
        (
            vec!["create", "events.events.k8s.io", "-n", "default"],
            "yes",
        ),
        (
            vec!["create", "leases.coordination.k8s.io", "-n", "rdd-system"],
            "yes",
        ),
        (
            vec!["create", "leases.coordination.k8s.io", "-n", "default"],
            "no",
        ),
        (vec!["delete", "volumes", "-n", "default"], "no"),
    ] {
        let mut a = vec!["auth", "can-i"];
        a.extend(&args);
        let o = kubectl(&k, &ic, &a, None);
        assert_eq!(
            String::from_utf8_lossy(&o.stdout).trim(),
            want,
            "can-i {args:?}"
        );
    }
    // The app-controller may change Apps; a new token replaces the controller's old one.
    let ac = token_kubeconfig(&s, "ac.yaml", &["--controller", "app-controller"]);
    ok(
        &k,
        &ac,
        &[
            "patch",
            "app",
            "app",
            "--type=merge",
            "-p",
            r#"{"spec":{"running":true}}"#,
        ],
    );
    let old = token_of(&ac);
    let ac2 = token_kubeconfig(&s, "ac2.yaml", &["--controller", "app-controller"]);
    let apps = "/apis/app.rancherdesktop.io/v1alpha1/apps";
    // The new token works at once (an unknown token makes the server re-read the file); the
    // old one is gone from then on.
    assert_eq!(curl(&s, &token_of(&ac2), "GET", apps).0, 200);
    assert_eq!(curl(&s, &old, "GET", apps).0, 401);
    // A role edited by hand is put back at the next start (autoupdate), so the declared least
    // privilege holds.
    ok(
        &k,
        &admin,
        &[
            "patch",
            "clusterrole",
            "rdd:image-controller",
            "--type=json",
            "-p",
            r#"[{"op":"add","path":"/rules/-","value":{"apiGroups":["*"],"resources":["*"],"verbs":["*"]}}]"#,
        ],
    );
    assert_eq!(
        ok(&k, &ic, &["auth", "can-i", "delete", "apps"]).trim(),
        "yes"
    );
    let mut s = s;
    s.restart();
    let o = kubectl(&k, &ic, &["auth", "can-i", "delete", "apps"], None);
    assert_eq!(String::from_utf8_lossy(&o.stdout).trim(), "no");
}

/// Nobody grants what they do not hold: a namespace admin (the aggregated `admin` role) may
/// write Roles and RoleBindings within their own rights only.
#[test]
fn rbac_escalation_is_refused() {
    let s = Server::start();
    let k = PathBuf::from(KUBECTL_OLD);
    apply(&s, TEAM);
    apply(
        &s,
        r#"
apiVersion: rbac.authorization.k8s.io/v1
kind: RoleBinding
metadata: {name: dana-admin, namespace: team}
roleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: admin}
subjects:
- {apiGroup: rbac.authorization.k8s.io, kind: User, name: dana}
"#,
    );
    let dana = token_kubeconfig(&s, "dana.yaml", &["--user", "dana"]);
    // admin aggregates edit and view: configmap and secret writes, reads of namespaces.
    ok(
        &k,
        &dana,
        &["create", "configmap", "made-by-dana", "-n", "team"],
    );
    assert_eq!(
        ok(
            &k,
            &dana,
            &["auth", "can-i", "get", "secrets", "-n", "team"]
        )
        .trim(),
        "yes"
    );
    assert_eq!(
        ok(
            &k,
            &dana,
            &["auth", "can-i", "create", "roles", "-n", "team"]
        )
        .trim(),
        "yes"
    );
    let role = |name: &str, rule: &str| {
        format!(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: Role\nmetadata: {{name: {name}, namespace: team}}\nrules:\n- {rule}\n"
        )
    };
    let o = kubectl(
        &k,
        &dana,
        &["apply", "-f", "-"],
        Some(&role(
            "cm-writer",
            r#"{apiGroups: [""], resources: [configmaps], verbs: [get, create]}"#,
        )),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let o = kubectl(
        &k,
        &dana,
        &["apply", "-f", "-"],
        Some(&role(
            "everything",
            r#"{apiGroups: ["*"], resources: ["*"], verbs: ["*"]}"#,
        )),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success()
            && err.contains(
                r#"roles.rbac.authorization.k8s.io "everything" is forbidden: user "dana""#
            )
            && err.contains("is attempting to grant RBAC permissions not currently held"),
        "{err}"
    );
    let o = kubectl(
        &k,
        &dana,
        &["apply", "-f", "-"],
        Some(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: dana-root, namespace: team}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: ClusterRole, name: cluster-admin}\nsubjects:\n- {kind: User, name: dana}\n",
        ),
    );
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(
        !o.status.success()
            && err.contains("attempting to grant RBAC permissions not currently held"),
        "{err}"
    );
    // The aggregated roles show what they aggregate, as upstream's controller writes it.
    let admin_kc = s.kubeconfig();
    let deadline = Instant::now() + Duration::from_secs(2);
    loop {
        let rules = ok(
            &k,
            &admin_kc,
            &["get", "clusterrole", "admin", "-o", "jsonpath={.rules}"],
        );
        if rules.contains("rolebindings") && rules.contains("configmaps") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "admin rules not aggregated: {rules}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    // Binding a role whose rights dana holds is fine.
    let o = kubectl(
        &k,
        &dana,
        &["apply", "-f", "-"],
        Some(
            "apiVersion: rbac.authorization.k8s.io/v1\nkind: RoleBinding\nmetadata: {name: erin-writes, namespace: team}\nroleRef: {apiGroup: rbac.authorization.k8s.io, kind: Role, name: cm-writer}\nsubjects:\n- {kind: User, name: erin}\n",
        ),
    );
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
}
