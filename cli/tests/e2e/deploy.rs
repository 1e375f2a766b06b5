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
