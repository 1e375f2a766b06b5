//! `rdd svc` as a user drives it: start, status, supervision of children, stop, and `rdd set`
//! with its wait semantics — all through the real `rdd` binary in a private HOME.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

struct Instance {
    home: tempfile::TempDir,
    name: String,
}

impl Instance {
    fn new() -> Instance {
        Instance {
            home: tempfile::tempdir().unwrap(),
            name: format!("s{}", rand::random::<u32>() % 100_000),
        }
    }
    fn rdd(&self, args: &[&str]) -> Output {
        Command::new(env!("CARGO_BIN_EXE_rdd"))
            .args(args)
            .env("HOME", self.home.path())
            .env("DOCKER_CONFIG", self.home.path().join(".docker"))
            .env("RDD_INSTANCE", &self.name)
            .env("RDD_LOG_LEVEL", "warn")
            .output()
            .unwrap()
    }
    fn dir(&self) -> PathBuf {
        self.home
            .path()
            .join(format!(".local/share/rancher-desktop-{}", self.name))
    }
    fn status_json(&self) -> serde_json::Value {
        std::fs::read(self.dir().join("children.json"))
            .ok()
            .and_then(|b| serde_json::from_slice(&b).ok())
            .unwrap_or(serde_json::json!([]))
    }
    fn child(&self, name: &str) -> serde_json::Value {
        self.status_json()
            .as_array()
            .and_then(|a| a.iter().find(|c| c["name"] == name).cloned())
            .unwrap_or(serde_json::Value::Null)
    }
    /// Only the App CRD, no controller: nothing but the test writes App status.
    fn start_bare(&self) {
        let o = self.rdd(&["svc", "start", "--controllers="]);
        assert!(o.status.success(), "{}", stderr(&o));
        let crd = crate::harness::repo_root().join("deploy/crds/apps.app.rancherdesktop.io.yaml");
        let o = self.kubectl(&["apply", "--server-side", "-f", crd.to_str().unwrap()]);
        assert!(o.status.success(), "{}", stderr(&o));
        let o = self.kubectl(&[
            "wait",
            "--for=condition=Established",
            "crd/apps.app.rancherdesktop.io",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    }

    fn kubectl(&self, args: &[&str]) -> Output {
        Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", self.dir().join("config.yaml"))
            .output()
            .unwrap()
    }
    /// A JSONPath of the App singleton, as kubectl prints it.
    fn app(&self, jsonpath: &str) -> String {
        let o = self.kubectl(&["get", "app", "app", "-o", &format!("jsonpath={jsonpath}")]);
        String::from_utf8_lossy(&o.stdout).to_string()
    }

    /// Processes of this instance running `exe` (found through their environment).
    fn processes(&self, exe: &str) -> Vec<u32> {
        let want = format!("RDD_INSTANCE={}", self.name);
        let mut out = Vec::new();
        for e in std::fs::read_dir("/proc").unwrap().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<u32>() else {
                continue;
            };
            let cmd = std::fs::read(e.path().join("cmdline")).unwrap_or_default();
            let first = cmd.split(|b| *b == 0).next().unwrap_or_default();
            if !Path::new(&*String::from_utf8_lossy(first)).ends_with(exe) {
                continue;
            }
            let env = std::fs::read(e.path().join("environ")).unwrap_or_default();
            if env.split(|b| *b == 0).any(|kv| kv == want.as_bytes()) {
                out.push(pid);
            }
        }
        out
    }
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.rdd(&["svc", "stop", "--timeout=20s"]);
    }
}

fn wait_for(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// stderr with the logfmt quoting of the `msg="…"` field undone (errors are logged as
/// `time=… level=fatal msg="…"`, cli.md §1.4), so assertions read like the message itself.
fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr)
        .trim()
        .replace("\\\"", "\"")
}

#[test]
fn cli_svc_supervises_children_restarts_them_and_leaves_no_orphans() {
    let inst = Instance::new();
    let o = inst.rdd(&["svc", "start", "--controllers=engine"]);
    assert!(o.status.success(), "{}", stderr(&o));
    wait_for("gateway running", || {
        inst.child("docker-gateway")["state"] == "running"
    });
    let pid = inst.child("docker-gateway")["pid"].as_u64().unwrap() as u32;
    assert_eq!(inst.processes("docker-gateway"), vec![pid]);
    let status = String::from_utf8_lossy(&inst.rdd(&["svc", "status"]).stdout).to_string();
    assert!(
        status.contains("control plane has been started: true"),
        "{status}"
    );
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("docker-gateway") && l.contains("running")),
        "{status}"
    );

    // A crashed child comes back, and the restart is visible.
    // SAFETY: killing the child we just identified.
    unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    wait_for("gateway restarted", || {
        let c = inst.child("docker-gateway");
        c["state"] == "running" && c["restarts"] == 1 && c["pid"].as_u64() != Some(u64::from(pid))
    });
    assert_eq!(
        inst.child("docker-gateway")["last_exit"],
        "killed by signal 9"
    );
    assert_eq!(inst.processes("docker-gateway").len(), 1);

    // kill -9 of the supervisor takes its children with it; a new start has no duplicates.
    let sup: i32 = std::fs::read_to_string(inst.dir().join("rdd.pid"))
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    // SAFETY: killing the supervisor we started.
    unsafe { libc::kill(sup, libc::SIGKILL) };
    wait_for("children gone with the supervisor", || {
        inst.processes("docker-gateway").is_empty()
    });
    let o = inst.rdd(&["svc", "start", "--controllers=engine"]);
    assert!(o.status.success(), "{}", stderr(&o));
    wait_for("gateway running again", || {
        inst.child("docker-gateway")["state"] == "running"
    });
    assert_eq!(inst.processes("docker-gateway").len(), 1);
    assert_eq!(inst.processes("rdd").len(), 1);

    let o = inst.rdd(&["svc", "stop"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(inst.processes("docker-gateway").is_empty());
    assert!(inst.processes("rdd").is_empty());
    let status = String::from_utf8_lossy(&inst.rdd(&["svc", "status"]).stdout).to_string();
    assert!(status.contains("has been started: false"), "{status}");
}

#[test]
fn cli_bad_input_is_a_one_line_error_and_changes_nothing() {
    let inst = Instance::new();
    let o = inst.rdd(&["svc", "start", "--controllers=app,bogus"]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("unknown controller or group \"bogus\""), "{e}");
    assert_eq!(e.lines().count(), 1, "{e}");
    assert!(!inst.dir().join("args.json").exists(), "nothing created");

    let o = inst.rdd(&["frobnicate"]);
    assert_eq!(o.status.code(), Some(2), "usage error");

    inst.start_bare();
    let o = inst.rdd(&["set", "--wait=false", "running=true"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let rv = |i: &Instance| i.app("{.metadata.resourceVersion}");
    let before = rv(&inst);
    for (args, want) in [
        (vec!["set", "bogus=1"], "unknown property \"bogus\""),
        (vec!["set", "running=maybe"], "expected boolean"),
        (
            vec!["set", "containerEngine.name=podman"],
            "valid values: moby, containerd",
        ),
        (vec!["set", "running"], "expected PROPERTY=VALUE format"),
        (vec!["set", "containerEngine=moby"], "is an object"),
    ] {
        let o = inst.rdd(&args);
        assert_eq!(o.status.code(), Some(1), "{args:?}");
        let e = stderr(&o);
        assert!(e.contains(want), "{args:?}: {e}");
        assert_eq!(e.lines().count(), 1, "{e}");
    }
    assert_eq!(rv(&inst), before, "nothing written");

    // A second serve on the same instance is refused.
    let o = inst.rdd(&["svc", "serve"]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(e.contains("is already running"), "{e}");
}

#[test]
fn cli_r_eng_i3_s8_t6_set_waits_for_its_own_generation_and_honours_wait_and_timeout_flags() {
    let inst = Instance::new();
    inst.start_bare();
    // --wait=false returns as soon as the write is accepted (no controller will ever settle).
    let t = Instant::now();
    let o = inst.rdd(&["set", "--wait=false", "running=true"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(t.elapsed() < Duration::from_secs(10));
    let generation = |i: &Instance| i.app("{.metadata.generation}").parse::<i64>().unwrap();
    let settle = |i: &Instance, g: i64| {
        let patch = serde_json::json!({"status": {"conditions": [{
            "type": "Settled", "status": "True", "reason": "Settled", "message": "test",
            "observedGeneration": g, "lastTransitionTime": "2026-01-01T00:00:00Z"}]}});
        let o = i.kubectl(&[
            "patch",
            "app",
            "app",
            "--subresource=status",
            "--type=merge",
            "-p",
            &patch.to_string(),
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    };
    // A stale Settled=True of the previous generation never ends the wait.
    settle(&inst, generation(&inst));
    let o = inst.rdd(&["set", "--timeout=3s", "running=false"]);
    assert_eq!(o.status.code(), Some(4), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("timed out waiting for App state"),
        "{}",
        stderr(&o)
    );

    // --timeout=0 waits without a deadline until Settled of its own generation.
    let mut child = Command::new(env!("CARGO_BIN_EXE_rdd"))
        .args(["set", "--timeout=0", "containerEngine.name=containerd"])
        .env("HOME", inst.home.path())
        .env("DOCKER_CONFIG", inst.home.path().join(".docker"))
        .env("RDD_INSTANCE", &inst.name)
        .env("RDD_LOG_LEVEL", "warn")
        .spawn()
        .unwrap();
    let g = {
        let mut g = 0;
        wait_for("the write", || {
            g = generation(&inst);
            inst.app("{.spec.containerEngine.name}") == "containerd"
        });
        g
    };
    std::thread::sleep(Duration::from_secs(4));
    assert!(
        child.try_wait().unwrap().is_none(),
        "still waiting after 4 s"
    );
    settle(&inst, g);
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        if let Some(s) = child.try_wait().unwrap() {
            assert!(s.success());
            break;
        }
        assert!(
            Instant::now() < deadline,
            "rdd set did not return after Settled"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// The README's main job, end to end: `rdd svc start` supervises the gateway and every
/// controller, `rdd start` brings the "VM" up through the limactl stand-in, whose forwarded
/// Docker socket leads to this machine's Docker, and a real container appears as a mirror;
/// `rdd stop` settles only after the mirrors are swept.
#[test]
fn cli_rdd_start_mirrors_the_local_docker_and_stop_sweeps() {
    let bin = Path::new(env!("CARGO_BIN_EXE_rdd"))
        .parent()
        .unwrap()
        .to_path_buf();
    for b in [
        "limactl-standin",
        "docker-gateway",
        "container-controller",
        "image-controller",
        "volume-controller",
        "app-controller",
        "limavm-controller",
    ] {
        assert!(
            bin.join(b).exists(),
            "{} missing: build the workspace (cargo build --bins)",
            bin.join(b).display()
        );
    }
    let inst = Instance::new();
    let scope = rdd_testkit::Scope::new();
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_rdd"))
            .args(args)
            .env("HOME", inst.home.path())
            .env("DOCKER_CONFIG", inst.home.path().join(".docker"))
            .env("RDD_INSTANCE", &inst.name)
            .env("RDD_LOG_LEVEL", "warn")
            .env("RDD_LIMACTL", bin.join("limactl-standin"))
            .env(
                "RDD_IMAGE_BASE_URL",
                crate::harness::repo_root().join("testkit/fixtures/images"),
            )
            // The mirror controllers (children of `rdd svc`) mirror only this test's objects.
            .env("RDD_LABEL_SELECTOR", scope.label())
            .output()
            .unwrap()
    };
    let o = run(&["svc", "start"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let id = scope.container("mirrored", true, &["sleep", "300"]);
    let image = scope.image(&["chain"]);
    let volume = scope.volume("chain");
    let o = run(&["start", "--timeout=90s"]);
    assert!(o.status.success(), "rdd start: {}", stderr(&o));
    wait_for("the container's mirror", || {
        let o = inst.kubectl(&["get", "containers", "-A", "-o", "name"]);
        String::from_utf8_lossy(&o.stdout).contains(&id)
    });
    let mirrored = |kind: &str, path: &str| {
        let o = inst.kubectl(&[
            "get",
            kind,
            "-A",
            "-o",
            &format!("jsonpath={{.items[*].{path}}}"),
        ]);
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    assert!(mirrored("images", "status.id").contains(&image));
    assert!(mirrored("volumes", "status.name").contains(&volume));
    // ContainerEngineReady (the app-controller's) is Connected only with all three mirror kinds
    // synced, each reported by its own controller.
    let cond =
        |t: &str, f: &str| inst.app(&format!("{{.status.conditions[?(@.type==\"{t}\")].{f}}}"));
    assert_eq!(cond("ContainerEngineReady", "reason"), "Connected");
    let ready_at = cond("ContainerEngineReady", "lastTransitionTime");
    for t in ["ContainersSynced", "ImagesSynced", "VolumesSynced"] {
        assert_eq!(cond(t, "reason"), "Connected", "{t}");
        assert!(
            cond(t, "lastTransitionTime") <= ready_at,
            "{t} before ContainerEngineReady"
        );
    }
    let o = run(&["stop", "--timeout=90s"]);
    assert!(o.status.success(), "rdd stop: {}", stderr(&o));
    let o = inst.kubectl(&["get", "containers,images,volumes", "-A", "-o", "name"]);
    assert!(
        String::from_utf8_lossy(&o.stdout).trim().is_empty(),
        "mirrors swept before stop returned"
    );
    assert_eq!(cond("ContainerEngineReady", "reason"), "Stopped");
    // The Docker container itself is untouched.
    assert!(rdd_testkit::docker(&["inspect", "-f", "{{.State.Running}}", &id]) == "true");
    assert!(rdd_testkit::docker_try(&["image", "inspect", &image]).0);
    assert!(rdd_testkit::docker_try(&["volume", "inspect", &volume]).0);
    let o = run(&["svc", "stop"]);
    assert!(o.status.success(), "{}", stderr(&o));
    for b in [
        "limactl-standin",
        "docker-gateway",
        "container-controller",
        "image-controller",
        "volume-controller",
        "app-controller",
        "limavm-controller",
    ] {
        assert!(inst.processes(b).is_empty(), "{b} left running");
    }
}

/// R-ENG-T5: `rdd svc delete` then `rdd svc start` with the Docker objects still present: the
/// first full sync prunes stale mirrors (left in NS with the mirror finalizer) and recreates the
/// mirrors of what Docker has. The supervised engine (gateway and the three mirror controllers)
/// runs on the real Docker socket; the test writes the App's `Running` condition itself.
#[test]
fn cli_r_eng_t5_full_sync_after_svc_delete_and_start_prunes_stale_mirrors_and_restores_the_rest() {
    let inst = Instance::new();
    let scope = rdd_testkit::Scope::new();
    let container = scope.container("kept", false, &["true"]);
    let image = scope.image(&["t5"]);
    let volume = scope.volume("kept");
    let ns = format!("t5-{}", scope.id);
    let run = |args: &[&str]| {
        Command::new(env!("CARGO_BIN_EXE_rdd"))
            .args(args)
            .env("HOME", inst.home.path())
            .env("DOCKER_CONFIG", inst.home.path().join(".docker"))
            .env("RDD_INSTANCE", &inst.name)
            .env("RDD_LOG_LEVEL", "warn")
            .env("RDD_DOCKER_HOST", "unix:///var/run/docker.sock")
            .env("RDD_LABEL_SELECTOR", scope.label())
            .output()
            .unwrap()
    };
    let kubectl_in = |args: &[&str], stdin: &str| {
        use std::io::Write;
        let mut child = Command::new("kubectl")
            .args(args)
            .env("KUBECONFIG", inst.dir().join("config.yaml"))
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap();
        child
            .stdin
            .take()
            .unwrap()
            .write_all(stdin.as_bytes())
            .unwrap();
        let o = child.wait_with_output().unwrap();
        assert!(o.status.success(), "kubectl {args:?}: {}", stderr(&o));
    };
    // `--controllers=engine` installs the containers group only: the App CRD as `start_bare`.
    let app_crd = || {
        let crd = crate::harness::repo_root().join("deploy/crds/apps.app.rancherdesktop.io.yaml");
        let o = inst.kubectl(&["apply", "--server-side", "-f", crd.to_str().unwrap()]);
        assert!(o.status.success(), "{}", stderr(&o));
        let o = inst.kubectl(&[
            "wait",
            "--for=condition=Established",
            "crd/apps.app.rancherdesktop.io",
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    };
    let running = || {
        app_crd();
        let app = format!(
            "apiVersion: app.rancherdesktop.io/v1alpha1\nkind: App\nmetadata:\n  name: app\nspec:\n  running: true\n  namespace: {ns}\n"
        );
        kubectl_in(&["apply", "--server-side", "-f", "-"], &app);
        let gen_ = inst.app("{.metadata.generation}");
        let status = format!(
            r#"{{"status":{{"conditions":[{{"type":"Running","status":"True","reason":"Test","message":"","lastTransitionTime":"2026-01-01T00:00:00Z","observedGeneration":{gen_}}}]}}}}"#
        );
        let o = inst.kubectl(&[
            "patch",
            "app",
            "app",
            "--subresource=status",
            "--type=merge",
            "-p",
            &status,
        ]);
        assert!(o.status.success(), "{}", stderr(&o));
    };
    let listing = |kind: &str, path: &str| {
        let o = inst.kubectl(&[
            "get",
            kind,
            "-n",
            &ns,
            "-o",
            &format!("jsonpath={{range .items[*]}}{{.metadata.name}} {{{path}}}{{\"\\n\"}}{{end}}"),
        ]);
        String::from_utf8_lossy(&o.stdout).to_string()
    };
    let mirrored = |listing_: &dyn Fn(&str, &str) -> String| {
        listing_("containers", ".metadata.name").contains(&container)
            && listing_("images", ".status.id").contains(&image)
            && listing_("volumes", ".status.name").contains(&volume)
    };

    // First life: the objects are mirrored.
    let o = run(&["svc", "start", "--controllers=engine"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = inst.kubectl(&["create", "namespace", &ns]);
    assert!(o.status.success(), "{}", stderr(&o));
    running();
    wait_for("first mirrors", || mirrored(&listing));

    // The instance is deleted (its API state with it); Docker keeps everything.
    let o = run(&["svc", "delete"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(!inst.dir().exists());

    // Second life: stale mirrors wait in NS (with the mirror finalizer) before the engine runs.
    let o = run(&["svc", "start", "--controllers=engine"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let o = inst.kubectl(&["create", "namespace", &ns]);
    assert!(o.status.success(), "{}", stderr(&o));
    let stale_container = "f".repeat(64);
    let stale_image = format!("img-stale-{}", scope.id);
    let stale_volume = format!("vol-stale-{}", scope.id);
    let fin = "engine.rancherdesktop.io/mirror";
    let mut objects = String::new();
    for (kind, name) in [
        ("Container", &stale_container),
        ("Image", &stale_image),
        ("Volume", &stale_volume),
    ] {
        objects.push_str(&format!(
            "---\napiVersion: containers.rancherdesktop.io/v1alpha1\nkind: {kind}\nmetadata:\n  name: {name}\n  namespace: {ns}\n  finalizers: [{fin}]\n"
        ));
    }
    kubectl_in(&["apply", "--server-side", "-f", "-"], &objects);
    running();
    let all = || {
        format!(
            "{}{}{}",
            listing("containers", ".metadata.name"),
            listing("images", ".status.id"),
            listing("volumes", ".status.name")
        )
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let now = all();
        if mirrored(&listing)
            && !now.contains(&stale_container)
            && !now.contains(&stale_image)
            && !now.contains(&stale_volume)
        {
            break;
        }
        if Instant::now() > deadline {
            let logs: Vec<String> = [
                "container-controller",
                "image-controller",
                "volume-controller",
            ]
            .iter()
            .map(|c| {
                let p = inst.home.path().join(format!(
                    ".local/state/rancher-desktop-{}/{c}.log",
                    inst.name
                ));
                format!(
                    "{c}: {}",
                    std::fs::read_to_string(&p).unwrap_or_else(|e| format!("{}: {e}", p.display()))
                )
            })
            .collect();
            panic!(
                "stale mirrors not pruned or the others not restored:\n{now}\n{}\n{}",
                inst.app("{.status.conditions}"),
                logs.join("\n")
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for t in ["ContainersSynced", "ImagesSynced", "VolumesSynced"] {
        assert_eq!(
            inst.app(&format!(
                "{{.status.conditions[?(@.type==\"{t}\")].reason}}"
            )),
            "Connected",
            "{t}"
        );
    }
    // Pruning made no Docker call: the objects are all still there.
    assert!(rdd_testkit::docker_try(&["inspect", &container]).0);
    assert!(rdd_testkit::docker_try(&["image", "inspect", &image]).0);
    assert!(rdd_testkit::docker_try(&["volume", "inspect", &volume]).0);
    let o = run(&["svc", "stop"]);
    assert!(o.status.success(), "{}", stderr(&o));
}

/// The App webhooks (resources.md §1.5) served by the supervised app-controller: channels
/// resolve to concrete versions, unsupported versions are refused through `rdd set` (exit 3,
/// the webhook's message) and nothing is written.
#[test]
fn cli_app_webhooks_resolve_channels_and_refuse_unsupported_versions() {
    let inst = Instance::new();
    let o = inst.rdd(&["svc", "start", "--controllers=app"]);
    assert!(o.status.success(), "{}", stderr(&o));
    let version = |i: &Instance| i.app("{.spec.kubernetes.version}");
    let o = inst.rdd(&["set", "--wait=false", "kubernetes.enabled=true"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(version(&inst), "1.34.6", "no version → channel stable");
    let o = inst.rdd(&["set", "--wait=false", "kubernetes.version=v1.32"]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(version(&inst), "1.32.13", "channel v1.32 resolved");
    let rv = inst.app("{.metadata.resourceVersion}");
    let o = inst.rdd(&["set", "--wait=false", "kubernetes.version=9.9.9"]);
    assert_eq!(o.status.code(), Some(3), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("spec.kubernetes.version \"9.9.9\" is not supported"),
        "{}",
        stderr(&o)
    );
    let after = inst.app("{.metadata.resourceVersion}");
    assert_eq!(rv, after, "nothing written");
    // The same rules through kubectl.
    let o = inst.kubectl(&[
        "patch",
        "app",
        "app",
        "--type=merge",
        "-p",
        r#"{"spec":{"kubernetes":{"version":"1.99.0"}}}"#,
    ]);
    assert!(!o.status.success());
    let e = stderr(&o);
    assert!(
        e.contains("admission webhook \"app-validator.app.rancherdesktop.io\" denied the request"),
        "{e}"
    );
    assert!(
        e.contains("spec.kubernetes.version \"1.99.0\" is not supported"),
        "{e}"
    );
    let o = inst.kubectl(&[
        "patch",
        "app",
        "app",
        "--type=merge",
        "-p",
        r#"{"spec":{"kubernetes":{"version":"latest"}}}"#,
    ]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        version(&inst),
        "1.35.3",
        "channel latest resolved for kubectl too"
    );
}
