//! End to end: `rdd svc serve`, app-controller, limavm-controller (each with its own
//! least-privilege identity) and `limactl-standin` as real processes, with the stand-in's host
//! agent proxying the instance Docker socket to the machine's real Docker.
//!
//! Needs the sibling binaries built first:
//! `cargo build -p rdd -p limavm-controller -p limactl-standin -p docker-gateway` (this test's own crate builds
//! `app-controller`).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::{ConfigMap, Event, Namespace};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DeleteParams, Patch, PatchParams, PostParams};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

/// The distro image fixtures (tiny xz files) the templates of these tests download offline.
fn images_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../testkit/fixtures/images")
}

fn bin(name: &str) -> PathBuf {
    let own = PathBuf::from(env!("CARGO_BIN_EXE_app-controller"));
    let p = own.parent().unwrap().join(name);
    assert!(
        p.exists(),
        "{} is missing: run `cargo build -p rdd -p limavm-controller -p limactl-standin -p docker-gateway` first",
        p.display()
    );
    p
}

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

fn alive(pid: i32) -> bool {
    pid > 0 && unsafe { libc::kill(pid, 0) } == 0
}

fn read_pid(p: &Path) -> i32 {
    std::fs::read_to_string(p)
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

struct Proc {
    name: &'static str,
    child: Child,
    admin: u16,
}

impl Proc {
    fn term(&mut self, wait: Duration) {
        rdd_testkit::terminate(&mut self.child, wait);
    }
}

/// One instance: API server, both controllers, the stand-in.
struct Env {
    home: PathBuf,
    _tmp: Option<tempfile::TempDir>,
    suffix: String,
    rdd: Option<Child>,
    procs: Vec<Proc>,
    client: Client,
    boot_ms: u64,
}

impl Env {
    async fn start(boot_ms: u64) -> Env {
        let tmp = tempfile::tempdir().unwrap();
        let home = tmp.path().to_path_buf();
        let suffix = format!("av{}", std::process::id() % 1000);
        let mut e = Env::start_in(home, &suffix, boot_ms).await;
        e._tmp = Some(tmp);
        e
    }

    fn dir(&self) -> PathBuf {
        self.home
            .join(".local/share")
            .join(format!("rancher-desktop-{}", self.suffix))
    }

    fn short_dir(&self) -> PathBuf {
        self.home.join(format!(".rd{}", self.suffix))
    }

    fn instance_dir(&self) -> PathBuf {
        self.short_dir().join("lima/rd")
    }

    fn cmd(&self, program: &Path) -> Command {
        let mut c = Command::new(program);
        // Offline: the rendered template's images come from the test fixtures.
        c.env("HOME", &self.home)
            .env("RDD_INSTANCE", &self.suffix)
            .env("RDD_IMAGE_BASE_URL", images_dir())
            .env_remove("RDD_KUBECONFIG")
            .env_remove("KUBECONFIG");
        c
    }

    async fn start_in(home: PathBuf, suffix: &str, boot_ms: u64) -> Env {
        let tls = home
            .join(".local/share")
            .join(format!("rancher-desktop-{suffix}"));
        let kubeconfig = tls.join("config.yaml");
        let rdd = Command::new(bin("rdd"))
            .args(["svc", "serve", "--secure-port", "0", "--controllers="])
            .env("HOME", &home)
            .env("RDD_INSTANCE", suffix)
            .env("RDD_LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .spawn()
            .expect("start rdd svc serve");
        let deadline = Instant::now() + Duration::from_secs(30);
        while !kubeconfig.exists() {
            assert!(
                Instant::now() < deadline,
                "rdd svc serve did not become ready"
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        let kc = kube::config::Kubeconfig::read_from(&kubeconfig).unwrap();
        let cfg = kube::Config::from_custom_kubeconfig(kc, &Default::default())
            .await
            .unwrap();
        let client = Client::try_from(cfg).unwrap();
        let mut env = Env {
            home,
            _tmp: None,
            suffix: suffix.to_string(),
            rdd: Some(rdd),
            procs: vec![],
            client,
            boot_ms,
        };
        env.install_crds().await;
        env.discovery(&["app", "limavm"]).await;
        env.start_limavm_controller();
        // The LimaVM webhooks are registered by the controller itself.
        let m: Api<k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration> =
            Api::all(env.client.clone());
        eventually("limavm-defaulter registered", 30, || async {
            m.get_opt("limavm-defaulter").await.ok().flatten().is_some()
        })
        .await;
        env.start_app_controller();
        env
    }

    async fn install_crds(&self) {
        let crds: Api<CustomResourceDefinition> = Api::all(self.client.clone());
        for f in [
            "apps.app.rancherdesktop.io.yaml",
            "limavms.lima.rancherdesktop.io.yaml",
        ] {
            let text = std::fs::read_to_string(repo().join("deploy/crds").join(f)).unwrap();
            let crd: CustomResourceDefinition = serde_saphyr::from_str(&text).unwrap();
            crds.create(&PostParams::default(), &crd).await.unwrap();
            let name = crd.name_any();
            eventually("CRD established", 15, || async {
                crds.get(&name).await.ok().is_some_and(|c| {
                    c.status
                        .and_then(|s| s.conditions)
                        .unwrap_or_default()
                        .iter()
                        .any(|c| c.type_ == "Established" && c.status == "True")
                })
            })
            .await;
        }
    }

    /// The discovery ConfigMap (resources.md §3.4) as a controller manager would publish it.
    async fn discovery(&self, enabled: &[&str]) {
        let cms: Api<ConfigMap> = Api::namespaced(self.client.clone(), "rdd-system");
        let entry = json!({"enabledControllers": enabled}).to_string();
        cms.patch(
            "rdd-controller-manager",
            &PatchParams::apply("test").force(),
            &Patch::Apply(json!({"apiVersion": "v1", "kind": "ConfigMap",
                "metadata": {"name": "rdd-controller-manager", "namespace": "rdd-system"},
                "data": {"test": entry}})),
        )
        .await
        .unwrap();
    }

    fn token(&self, controller: &str) -> PathBuf {
        let path = self.dir().join(format!("{controller}.kubeconfig"));
        let out = self
            .cmd(&bin("rdd"))
            .args([
                "svc",
                "token",
                "create",
                "--controller",
                controller,
                "--kubeconfig",
            ])
            .arg(&path)
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        path
    }

    fn start_limavm_controller(&mut self) {
        let kc = self.token("limavm-controller");
        let admin = free_port();
        let child = self
            .cmd(&bin("limavm-controller"))
            .env("RDD_KUBECONFIG", kc)
            .env("RDD_LIMACTL", bin("limactl-standin"))
            .env("RDD_ADMIN_ADDR", format!("127.0.0.1:{admin}"))
            .env("RDD_LOG_LEVEL", "warn")
            .env("LIMACTL_STANDIN_BOOT_MS", self.boot_ms.to_string())
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        self.procs.push(Proc {
            name: "limavm",
            child,
            admin,
        });
    }

    fn start_app_controller(&mut self) {
        let kc = self.token("app-controller");
        let admin = free_port();
        let child = self
            .cmd(Path::new(env!("CARGO_BIN_EXE_app-controller")))
            .env("RDD_KUBECONFIG", kc)
            .env("RDD_ADMIN_ADDR", format!("127.0.0.1:{admin}"))
            .env("RDD_LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        self.procs.push(Proc {
            name: "app",
            child,
            admin,
        });
    }

    fn proc(&mut self, name: &str) -> &mut Proc {
        self.procs.iter_mut().find(|p| p.name == name).unwrap()
    }

    /// Sum of `controller_runtime_reconcile_total` of one controller process.
    fn reconciles(&mut self, name: &str) -> u64 {
        let port = self.proc(name).admin;
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
        use std::io::{Read, Write};
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .unwrap();
        let mut body = String::new();
        s.read_to_string(&mut body).unwrap();
        body.lines()
            .filter(|l| l.starts_with("controller_runtime_reconcile_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
            .sum::<f64>() as u64
    }

    fn apps(&self) -> Api<Value2> {
        Api::all_with(self.client.clone(), &app_resource())
    }

    fn vms(&self, ns: &str) -> Api<Value2> {
        Api::namespaced_with(self.client.clone(), ns, &vm_resource())
    }

    async fn create_app(&self, running: bool, ns: &str) {
        let app: Value2 = serde_json::from_value(json!({
            "apiVersion": "app.rancherdesktop.io/v1alpha1", "kind": "App",
            "metadata": {"name": "app"},
            "spec": {"running": running, "namespace": ns}
        }))
        .unwrap();
        self.apps()
            .create(&PostParams::default(), &app)
            .await
            .unwrap();
    }

    async fn app(&self) -> Value {
        serde_json::to_value(self.apps().get("app").await.unwrap()).unwrap()
    }

    async fn set_app(&self, spec: Value) -> i64 {
        let a = self
            .apps()
            .patch(
                "app",
                &PatchParams::default(),
                &Patch::Merge(json!({"spec": spec})),
            )
            .await
            .unwrap();
        a.metadata.generation.unwrap()
    }

    /// Wait for App `Settled=True` with observedGeneration ≥ `generation` (as `rdd set` will).
    async fn wait_settled(&self, generation: i64, secs: u64) -> Value {
        let apps = self.apps();
        let mut last = Value::Null;
        let deadline = Instant::now() + Duration::from_secs(secs);
        loop {
            if let Ok(a) = apps.get("app").await {
                let v = serde_json::to_value(&a).unwrap();
                if let Some(c) = cond(&v, "Settled")
                    && c["status"] == "True"
                    && c["observedGeneration"].as_i64().unwrap_or(0) >= generation
                {
                    return v;
                }
                last = v;
            }
            assert!(
                Instant::now() < deadline,
                "App did not settle for generation {generation}: {}",
                serde_json::to_string_pretty(&last["status"]).unwrap()
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    fn agent_pid(&self) -> i32 {
        read_pid(&self.instance_dir().join("ha.pid"))
    }

    /// Stop everything this environment started, controllers first (the limavm-controller
    /// interrupts its host agents), then kill any stand-in process left behind.
    fn stop(&mut self) {
        for p in self.procs.iter_mut().rev() {
            p.term(Duration::from_secs(50));
        }
        self.procs.clear();
        if let Ok(d) = std::fs::read_dir(self.short_dir().join("lima")) {
            for e in d.filter_map(Result::ok) {
                for f in ["ha.pid", "qemu.pid"] {
                    let pid = read_pid(&e.path().join(f));
                    if alive(pid) {
                        unsafe { libc::kill(pid, libc::SIGKILL) };
                    }
                }
            }
        }
        if let Some(mut c) = self.rdd.take() {
            unsafe { libc::kill(c.id() as i32, libc::SIGTERM) };
            std::thread::sleep(Duration::from_millis(200));
            let _ = c.kill();
            let _ = c.wait();
        }
    }
}

impl Drop for Env {
    fn drop(&mut self) {
        self.stop();
    }
}

type Value2 = kube::core::DynamicObject;

fn app_resource() -> kube::core::ApiResource {
    kube::core::ApiResource {
        group: "app.rancherdesktop.io".into(),
        version: "v1alpha1".into(),
        api_version: "app.rancherdesktop.io/v1alpha1".into(),
        kind: "App".into(),
        plural: "apps".into(),
    }
}

fn vm_resource() -> kube::core::ApiResource {
    kube::core::ApiResource {
        group: "lima.rancherdesktop.io".into(),
        version: "v1alpha1".into(),
        api_version: "lima.rancherdesktop.io/v1alpha1".into(),
        kind: "LimaVM".into(),
        plural: "limavms".into(),
    }
}

fn cond<'a>(obj: &'a Value, t: &str) -> Option<&'a Value> {
    obj["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == t)
}

async fn eventually<F, Fut>(what: &str, secs: u64, mut f: F)
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !f().await {
        assert!(Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// GET /_ping through a Unix socket (the forwarded Docker socket).
fn docker_ping(sock: &Path) -> Result<String, String> {
    use std::io::{Read, Write};
    let mut s = std::os::unix::net::UnixStream::connect(sock).map_err(|e| e.to_string())?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok();
    s.write_all(b"GET /_ping HTTP/1.1\r\nHost: docker\r\nConnection: close\r\n\r\n")
        .map_err(|e| e.to_string())?;
    let mut out = String::new();
    s.read_to_string(&mut out).map_err(|e| e.to_string())?;
    Ok(out)
}

async fn vm_json(env: &Env, ns: &str) -> Option<Value> {
    env.vms(ns)
        .get_opt("rd")
        .await
        .unwrap()
        .map(|v| serde_json::to_value(v).unwrap())
}

async fn wait_gone(env: &Env, secs: u64) {
    let apps = env.apps();
    eventually("App deleted", secs, || async {
        apps.get_opt("app").await.unwrap().is_none()
    })
    .await;
}

/// App create → LimaVM Running → App Running=True with the App's generation (R-APP-S2) →
/// Settled; the engine's Docker socket works; idle passes write nothing (R-APP-D3); stop;
/// events (R-APP-S6); deletion removes LimaVM, both ConfigMaps (R-APP-S4), the namespace, the
/// host agent and the instance directory.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_app_s2_s4_s6_d3_t2_t3_i3_lifecycle_with_real_docker() {
    let mut env = Env::start(300).await;
    let ns = "appns";
    env.create_app(true, ns).await;
    let started = Instant::now();
    let app = env.wait_settled(1, 60).await;
    eprintln!("create → Settled=True: {:?}", started.elapsed());
    let generation = app["metadata"]["generation"].as_i64().unwrap();
    let running = cond(&app, "Running").unwrap();
    assert_eq!(running["status"], "True");
    assert_eq!(running["reason"], "Started");
    assert_eq!(
        running["observedGeneration"].as_i64(),
        Some(generation),
        "R-APP-S2"
    );
    let vm = vm_json(&env, ns).await.unwrap();
    assert_eq!(
        cond(&vm, "Running").unwrap()["lastTransitionTime"],
        running["lastTransitionTime"],
        "mirrored lastTransitionTime"
    );
    assert!(
        vm["metadata"]["finalizers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "rdd.rancherdesktop.io/owned-by-App")
    );
    // The engine is up: the instance Docker socket reaches the real Docker.
    let sock = env.short_dir().join("docker.sock");
    let ping = docker_ping(&sock).expect("docker socket served by the stand-in");
    assert!(ping.contains("200 OK") && ping.ends_with("OK"), "{ping}");
    // The input ConfigMap is gone once the LimaVM exists (R-APP-I2); the copy has the rendering.
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), ns);
    eventually("input rd deleted", 10, || async {
        cms.get_opt("rd").await.unwrap().is_none()
    })
    .await;
    let copy = cms.get("rd-template").await.unwrap();
    assert!(copy.data.unwrap()["template"].contains("\nparam:\n"));

    // R-APP-D3 / idle passes: poke the LimaVM with an annotation 10 times; both controllers
    // run a pass each time and write nothing.
    tokio::time::sleep(Duration::from_secs(1)).await;
    let app_rv = env.app().await["metadata"]["resourceVersion"].clone();
    let vms = env.vms(ns);
    for i in 0..10 {
        let (a0, l0) = (env.reconciles("app"), env.reconciles("limavm"));
        let poked = vms
            .patch(
                "rd",
                &PatchParams::default(),
                &Patch::Merge(json!({"metadata": {"annotations": {"test/poke": i.to_string()}}})),
            )
            .await
            .unwrap();
        let rv = poked.resource_version();
        let deadline = Instant::now() + Duration::from_secs(10);
        while env.reconciles("app") <= a0 || env.reconciles("limavm") <= l0 {
            assert!(Instant::now() < deadline, "no reconcile after poke {i}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
        assert_eq!(
            vms.get("rd").await.unwrap().resource_version(),
            rv,
            "LimaVM written on idle pass {i}"
        );
        assert_eq!(
            env.app().await["metadata"]["resourceVersion"],
            app_rv,
            "App written on idle pass {i}"
        );
    }

    // Stop.
    let pid = env.agent_pid();
    assert!(alive(pid));
    let g = env.set_app(json!({"running": false})).await;
    let app = env.wait_settled(g, 60).await;
    assert_eq!(cond(&app, "Running").unwrap()["reason"], "Stopped");
    eventually("host agent exited", 10, || async { !alive(pid) }).await;
    assert!(
        !sock.exists(),
        "the Docker socket is removed when the VM stops"
    );
    // Each controller published its discovery entry (resources.md §3.4).
    let disc: Api<ConfigMap> = Api::namespaced(env.client.clone(), "rdd-system");
    let data = disc
        .get("rdd-controller-manager")
        .await
        .unwrap()
        .data
        .unwrap();
    for (key, name) in [("app-controller", "app"), ("limavm-controller", "limavm")] {
        let entry: Value = serde_json::from_str(&data[key]).unwrap();
        assert_eq!(entry["enabledControllers"], json!([name]), "{key}");
    }
    // R-APP-I5: the running patch touched only spec.running; another client's annotation stays.
    let vm = vm_json(&env, ns).await.unwrap();
    assert_eq!(vm["metadata"]["annotations"]["test/poke"], "9");
    assert_eq!(vm["spec"]["running"], false);
    // A no-op stop settles at once.
    let g2 = env
        .set_app(json!({"running": false, "containerEngine": {"name": "moby"}}))
        .await;
    env.wait_settled(g2, 10).await;

    // R-APP-S6: lifecycle events on the App.
    let events: Api<Event> = Api::all(env.client.clone());
    let list = events.list(&Default::default()).await.unwrap();
    let reasons: Vec<String> = list
        .items
        .iter()
        .filter(|e| e.involved_object.kind.as_deref() == Some("App"))
        .filter_map(|e| e.reason.clone())
        .collect();
    assert!(reasons.iter().any(|r| r == "LimaVMCreated"), "{reasons:?}");
    assert!(
        reasons.iter().any(|r| r == "RunningPropagated"),
        "{reasons:?}"
    );

    // Start again, then delete the App while running.
    let g = env.set_app(json!({"running": true})).await;
    env.wait_settled(g, 60).await;
    let pid = env.agent_pid();
    env.apps()
        .delete("app", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&env, 60).await;
    assert!(vm_json(&env, ns).await.is_none());
    assert!(cms.get_opt("rd").await.unwrap().is_none(), "R-APP-S4: rd");
    assert!(
        cms.get_opt("rd-template").await.unwrap().is_none(),
        "R-APP-S4: rd-template"
    );
    assert!(!alive(pid), "no host agent remains");
    assert!(
        !env.instance_dir().exists(),
        "no instance directory remains"
    );
    let nss: Api<Namespace> = Api::all(env.client.clone());
    let n = nss.get_opt(ns).await.unwrap();
    assert!(
        n.is_none_or(|n| n.metadata.deletion_timestamp.is_some()),
        "owned namespace deleted"
    );
    env.stop();
}

/// Apply one `<Kind>sSynced` condition as a mirror controller would (SSA, its own manager).
async fn synced(env: &Env, kind: &str, status: &str, reason: &str, generation: i64) {
    let now = chrono_now();
    env.apps()
        .patch_status(
            "app",
            &PatchParams::apply(&format!("{}-mirror", kind.to_lowercase())).force(),
            &Patch::Apply(
                json!({"apiVersion": "app.rancherdesktop.io/v1alpha1", "kind": "App",
                "status": {"conditions": [{"type": format!("{kind}sSynced"), "status": status,
                    "reason": reason, "message": format!("{kind} {reason}"),
                    "observedGeneration": generation, "lastTransitionTime": now}]}}),
            ),
        )
        .await
        .unwrap();
}

fn chrono_now() -> String {
    chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

/// With the engine enabled, `Settled` waits for `ContainerEngineReady`, which the app-controller
/// derives from the three `<Kind>sSynced` conditions the mirror controllers write (written here
/// by the test in their place); `running=false` settles only after every kind reported its
/// sweep (`Stopped`) for the new generation.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn settled_follows_the_synced_conditions_of_the_mirrors_and_r_app_t9() {
    let env = Env::start(200).await;
    env.discovery(&["app", "limavm", "engine"]).await;
    env.create_app(true, "default").await;
    let apps = env.apps();
    eventually("Settled=False/WaitingForEngine", 60, || async {
        let a = serde_json::to_value(apps.get("app").await.unwrap()).unwrap();
        cond(&a, "Running").is_some_and(|c| c["status"] == "True")
            && cond(&a, "Settled").is_some_and(|c| c["reason"] == "WaitingForEngine")
    })
    .await;
    let g = env.app().await["metadata"]["generation"].as_i64().unwrap();
    for k in ["Container", "Image"] {
        synced(&env, k, "True", "Connected", g).await;
    }
    tokio::time::sleep(Duration::from_millis(500)).await;
    let a = env.app().await;
    assert_eq!(
        cond(&a, "Settled").unwrap()["status"],
        "False",
        "two of three kinds are not enough"
    );
    synced(&env, "Volume", "True", "Connected", g).await;
    let a = env.wait_settled(g, 10).await;
    let cer = cond(&a, "ContainerEngineReady").unwrap();
    assert_eq!(
        (cer["status"].as_str(), cer["reason"].as_str()),
        (Some("True"), Some("Connected"))
    );
    assert!(
        cond(&a, "ContainersSynced").is_some(),
        "other writers' conditions survive"
    );

    let g2 = env.set_app(json!({"running": false})).await;
    eventually("VM stopped", 30, || async {
        let a = serde_json::to_value(apps.get("app").await.unwrap()).unwrap();
        cond(&a, "Running").is_some_and(|c| c["reason"] == "Stopped")
    })
    .await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let a = env.app().await;
    assert_eq!(
        cond(&a, "Settled").unwrap()["reason"],
        "EngineStale",
        "not settled before the sweep"
    );
    synced(&env, "Container", "False", "Stopped", g2).await;
    synced(&env, "Image", "False", "Stopped", g2).await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let a = env.app().await;
    assert_eq!(
        cond(&a, "Settled").unwrap()["status"],
        "False",
        "one kind still sweeping"
    );
    synced(&env, "Volume", "False", "Stopped", g2).await;
    env.wait_settled(g2, 10).await;

    // R-APP-T9: a LimaVM whose deletion never completes (a foreign finalizer) keeps the App in
    // teardown, polling, without deadlock; removing the finalizer lets the App go.
    let vms = env.vms("default");
    vms.patch("rd", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"finalizers": ["rdd.rancherdesktop.io/cleanup", "rdd.rancherdesktop.io/owned-by-App", "test.rdd.io/hold"]}})))
        .await
        .unwrap();
    env.apps()
        .delete("app", &DeleteParams::default())
        .await
        .unwrap();
    eventually("LimaVM held only by the foreign finalizer", 30, || async {
        vm_json(&env, "default")
            .await
            .is_some_and(|v| v["metadata"]["finalizers"] == json!(["test.rdd.io/hold"]))
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    assert!(
        env.apps().get_opt("app").await.unwrap().is_some(),
        "the App waits for its LimaVM"
    );
    vms.patch(
        "rd",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    wait_gone(&env, 30).await;
}

/// R-APP-S7 (a bogus `rd` is overwritten), R-APP-D1/T1 (a LimaVM deleted while the App exists
/// is recreated), R-APP-T4 (App deleted while the VM is starting: teardown completes, no host
/// agent and no instance directory remain).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_app_s7_d1_t1_t4_recreate_and_delete_while_starting() {
    let env = Env::start(30_000).await;
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), "default");
    let bogus: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "rd"}, "data": {"template": "bogus: true\n"}}),
    )
    .unwrap();
    cms.create(&PostParams::default(), &bogus).await.unwrap();
    env.create_app(false, "default").await;
    eventually("rd-template with the rendering", 30, || async {
        cms.get_opt("rd-template").await.unwrap().is_some_and(|c| {
            c.data
                .unwrap_or_default()
                .get("template")
                .is_some_and(|t| t.contains("\nparam:\n"))
        })
    })
    .await;
    env.wait_settled(1, 30).await;
    let vms = env.vms("default");
    let uid = vms.get("rd").await.unwrap().uid().unwrap();
    // The DELETE validator refuses while the App owns it ...
    let err = vms
        .delete("rd", &DeleteParams::default())
        .await
        .unwrap_err();
    assert!(err.to_string().contains("owned by App"), "{err}");
    // ... so take admission out of the way, as the spec's D1 test does.
    let v: Api<k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration> =
        Api::all(env.client.clone());
    v.delete("limavm-validator", &DeleteParams::default())
        .await
        .unwrap();
    vms.delete("rd", &DeleteParams::default()).await.unwrap();
    eventually("LimaVM recreated with a new UID", 30, || async {
        vms.get_opt("rd").await.unwrap().is_some_and(|o| {
            o.uid() != Some(uid.clone()) && o.metadata.deletion_timestamp.is_none()
        })
    })
    .await;
    env.wait_settled(1, 30).await;
    // Start (the stand-in boots for 30 s), then delete the App while Starting.
    env.set_app(json!({"running": true})).await;
    eventually("host agent started", 30, || async {
        alive(env.agent_pid())
    })
    .await;
    let pid = env.agent_pid();
    let vm = vm_json(&env, "default").await.unwrap();
    assert_ne!(
        cond(&vm, "Running").map(|c| c["status"].clone()),
        Some(json!("True"))
    );
    env.apps()
        .delete("app", &DeleteParams::default())
        .await
        .unwrap();
    wait_gone(&env, 60).await;
    assert!(!alive(pid), "R-APP-T4: no host agent remains");
    assert!(
        !env.instance_dir().exists(),
        "R-APP-T4: no instance directory remains"
    );
    assert!(cms.get_opt("rd").await.unwrap().is_none());
    assert!(cms.get_opt("rd-template").await.unwrap().is_none());
}

/// Template change restarts the VM once and keeps `Settled=False/ApplyingTemplate` until it is
/// applied; the restart annotation restarts exactly once; a SIGKILLed host agent is detected and
/// restarted; an orphaned agent of a killed controller is found and killed (limavm §3.6, §3.7).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn template_change_restart_annotation_crash_and_orphan() {
    let mut env = Env::start(300).await;
    env.create_app(true, "default").await;
    env.wait_settled(1, 60).await;
    let vms = env.vms("default");
    let count = |v: &Value| v["status"]["restartCount"].as_i64().unwrap_or(0);
    let vm = vm_json(&env, "default").await.unwrap();
    assert_eq!(count(&vm), 1);

    // Template change, followed through a watch from before the write, so a short
    // ApplyingTemplate phase cannot slip between two polls.
    let pid = env.agent_pid();
    let apps = env.apps();
    let rv = apps
        .get("app")
        .await
        .unwrap()
        .resource_version()
        .unwrap_or_default();
    let g = env
        .set_app(json!({"containerEngine": {"name": "containerd"}}))
        .await;
    let mut saw_applying = false;
    let mut events = {
        use futures::StreamExt;
        apps.watch(
            &kube::api::WatchParams::default()
                .fields("metadata.name=app")
                .timeout(60),
            &rv,
        )
        .await
        .unwrap()
        .boxed()
    };
    loop {
        use futures::TryStreamExt;
        let ev = events.try_next().await.unwrap();
        let Some(kube::api::WatchEvent::Modified(app)) = ev else {
            assert!(ev.is_some(), "template change did not settle within 60 s");
            continue;
        };
        let a = serde_json::to_value(app).unwrap();
        let Some(s) = cond(&a, "Settled") else {
            continue;
        };
        if s["reason"] == "ApplyingTemplate" {
            saw_applying = true;
        }
        if s["status"] == "True" && s["observedGeneration"].as_i64() == Some(g) {
            break;
        }
    }
    assert!(
        saw_applying,
        "Settled=False/ApplyingTemplate while the template is applied"
    );
    let vm = vm_json(&env, "default").await.unwrap();
    assert_eq!(count(&vm), 2, "restarted once");
    assert!(!alive(pid), "the old host agent is gone");
    let lima_yaml = std::fs::read_to_string(env.instance_dir().join("lima.yaml")).unwrap();
    assert!(lima_yaml.contains("CONTAINER_ENGINE: containerd"));

    // Restart annotation: exactly one restart.
    vms.patch("rd", &PatchParams::default(), &Patch::Merge(json!({"metadata": {"annotations": {"lima.rancherdesktop.io/restartRequested": "2026-01-01T00:00:00Z"}}})))
        .await
        .unwrap();
    eventually("restarted by the annotation", 30, || async {
        let v = vm_json(&env, "default").await.unwrap();
        count(&v) == 3
            && v["metadata"]["annotations"]
                .get("lima.rancherdesktop.io/restartRequested")
                .is_none()
            && cond(&v, "Running").is_some_and(|c| c["status"] == "True")
    })
    .await;
    tokio::time::sleep(Duration::from_secs(2)).await;
    assert_eq!(
        count(&vm_json(&env, "default").await.unwrap()),
        3,
        "exactly once"
    );

    // SIGKILL the host agent: detected, restarted (G-4 backoff: first restart after ~1 s).
    let pid = env.agent_pid();
    unsafe { libc::kill(pid, libc::SIGKILL) };
    let killed = Instant::now();
    eventually("restarted after SIGKILL", 30, || async {
        let v = vm_json(&env, "default").await.unwrap();
        count(&v) == 4 && cond(&v, "Running").is_some_and(|c| c["status"] == "True")
    })
    .await;
    eprintln!("SIGKILL → Running again: {:?}", killed.elapsed());
    let new_pid = env.agent_pid();
    assert!(alive(new_pid) && new_pid != pid);
    // The host agent is in its own process group (R-ENG-S12).
    assert_eq!(unsafe { libc::getpgid(new_pid) }, new_pid);
    // G-4: a crash right after a crash restart waits for the backoff (2 s after that restart).
    unsafe { libc::kill(new_pid, libc::SIGKILL) };
    let killed = Instant::now();
    eventually("restarted after the second SIGKILL", 30, || async {
        let v = vm_json(&env, "default").await.unwrap();
        count(&v) == 5 && cond(&v, "Running").is_some_and(|c| c["status"] == "True")
    })
    .await;
    let second = killed.elapsed();
    eprintln!("second SIGKILL → Running again: {second:?}");
    assert!(
        second >= Duration::from_secs(1),
        "crash loop restarts back off: {second:?}"
    );
    let new_pid = env.agent_pid();

    // Orphan: the controller dies with SIGKILL; its agent survives; a new controller kills it
    // and starts a fresh one.
    let c = env.proc("limavm");
    let _ = c.child.kill();
    let _ = c.child.wait();
    env.procs.retain(|p| p.name != "limavm");
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        alive(new_pid),
        "the host agent outlives a killed controller"
    );
    env.start_limavm_controller();
    eventually("orphan killed and VM running again", 60, || async {
        let v = vm_json(&env, "default").await.unwrap();
        !alive(new_pid)
            && alive(env.agent_pid())
            && cond(&v, "Running").is_some_and(|c| c["status"] == "True")
    })
    .await;

    // G-2 / §3.9: SIGTERM to the controller interrupts the agent first (it emits `exiting`,
    // which only its SIGINT/SIGTERM handler does) before the forced cleanup.
    let pid = env.agent_pid();
    env.proc("limavm").term(Duration::from_secs(50));
    assert!(!alive(pid), "the host agent is stopped with the controller");
    let log = std::fs::read_to_string(env.instance_dir().join("ha.stdout.log")).unwrap();
    assert!(
        log.lines()
            .last()
            .is_some_and(|l| l.contains("\"exiting\":true")),
        "interrupted, not killed: {log}"
    );
}

/// Two instances under one HOME share no port, socket or directory (R-ENG-L1, R-APP-T7).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn two_instances_side_by_side() {
    let tmp = tempfile::tempdir().unwrap();
    let base = std::process::id() % 1000;
    let a = Env::start_in(tmp.path().to_path_buf(), &format!("x{base}"), 200).await;
    let b = Env::start_in(tmp.path().to_path_buf(), &format!("y{base}"), 200).await;
    a.create_app(true, "default").await;
    b.create_app(true, "default").await;
    a.wait_settled(1, 60).await;
    b.wait_settled(1, 60).await;
    assert_ne!(a.instance_dir(), b.instance_dir());
    for e in [&a, &b] {
        let ping = docker_ping(&e.short_dir().join("docker.sock")).unwrap();
        assert!(ping.contains("200 OK"));
        let t = std::fs::read_to_string(e.instance_dir().join("lima.yaml")).unwrap();
        assert!(t.contains(&format!("{}/docker.sock", e.short_dir().display())));
        assert!(!t.contains("localPort:"));
    }
    assert_ne!(a.agent_pid(), b.agent_pid());
    let port = |e: &Env| {
        let t = std::fs::read_to_string(e.dir().join("config.yaml")).unwrap();
        let i = t.find("https://127.0.0.1:").unwrap() + "https://127.0.0.1:".len();
        t[i..]
            .chars()
            .take_while(char::is_ascii_digit)
            .collect::<String>()
    };
    assert_ne!(port(&a), port(&b));

    // Kubernetes ports: 7441 + the instance index (or a free one), per instance; a template
    // change applies them to the running VMs.
    let mut k8s_ports = vec![];
    for e in [&a, &b] {
        let g = e
            .set_app(json!({"kubernetes": {"enabled": true, "version": "1.34.6"}}))
            .await;
        let app = e.wait_settled(g, 60).await;
        let p = app["status"]["kubernetesPort"].as_i64().unwrap();
        let t = std::fs::read_to_string(e.instance_dir().join("lima.yaml")).unwrap();
        assert!(t.contains(&format!("KUBERNETES_PORT: {p}\n")), "{t}");
        assert!(t.contains("KUBERNETES_ENABLED: true"));
        k8s_ports.push(p);
    }
    assert_ne!(k8s_ports[0], k8s_ports[1]);
}

/// One injected admission failure: requests matching (operation, resource, name) are denied
/// with `code` while `remaining` > 0 (u32::MAX: until cleared).
#[derive(Clone)]
struct Fault {
    operation: &'static str,
    resource: &'static str,
    name: &'static str,
    code: u16,
    remaining: u32,
    hits: u32,
}

type Faults = std::sync::Arc<std::sync::Mutex<Vec<Fault>>>;

/// A validating webhook served by this test that injects failures (code 409 Conflict, 500)
/// into chosen writes.
async fn fault_webhook(env: &Env) -> Faults {
    use kube::core::admission::AdmissionResponse;
    let faults: Faults = Default::default();
    let f2 = faults.clone();
    let routes = rdd_kit::webhook::Routes::default().handle("/fault", move |req| {
        let op = format!("{:?}", req.operation).to_uppercase();
        let mut all = f2.lock().unwrap();
        for f in all.iter_mut() {
            if f.operation == op
                && f.resource == req.resource.resource
                && f.name == req.name
                && f.remaining > 0
            {
                f.remaining = f.remaining.saturating_sub(1);
                f.hits += 1;
                let mut r = AdmissionResponse::from(req).deny(format!("injected {}", f.code));
                r.result.code = f.code;
                r.result.reason = if f.code == 409 {
                    "Conflict".into()
                } else {
                    "InternalError".into()
                };
                return r;
            }
        }
        AdmissionResponse::from(req)
    });
    let key = rcgen::KeyPair::generate().unwrap();
    let mut params = rcgen::CertificateParams::new(vec!["localhost".to_string()]).unwrap();
    params
        .subject_alt_names
        .push(rcgen::SanType::IpAddress("127.0.0.1".parse().unwrap()));
    let cert = params.self_signed(&key).unwrap();
    use base64::Engine;
    let ca = base64::engine::general_purpose::STANDARD.encode(cert.pem());
    let addr = rdd_kit::webhook::serve(
        "127.0.0.1:0".parse().unwrap(),
        &cert.pem(),
        &key.serialize_pem(),
        routes,
    )
    .await
    .unwrap();
    let v: Api<k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration> =
        Api::all(env.client.clone());
    let cfg = serde_json::from_value(json!({
        "metadata": {"name": "test-faults"},
        "webhooks": [{"name": "faults.test.rdd.io", "admissionReviewVersions": ["v1"], "sideEffects": "None",
            "failurePolicy": "Ignore",
            "clientConfig": {"url": format!("https://{addr}/fault"), "caBundle": ca},
            "rules": [
                {"apiGroups": ["lima.rancherdesktop.io"], "apiVersions": ["v1alpha1"], "resources": ["limavms"], "operations": ["CREATE", "UPDATE"]},
                {"apiGroups": [""], "apiVersions": ["v1"], "resources": ["configmaps"], "operations": ["DELETE"]}
            ]}]
    }))
    .unwrap();
    v.create(&PostParams::default(), &cfg).await.unwrap();
    faults
}

fn inject(faults: &Faults, f: Fault) {
    faults.lock().unwrap().push(f);
}

fn hits(faults: &Faults, operation: &str, resource: &str) -> u32 {
    faults
        .lock()
        .unwrap()
        .iter()
        .filter(|f| f.operation == operation && f.resource == resource)
        .map(|f| f.hits)
        .sum()
}

fn fault(
    operation: &'static str,
    resource: &'static str,
    name: &'static str,
    code: u16,
    remaining: u32,
) -> Fault {
    Fault {
        operation,
        resource,
        name,
        code,
        remaining,
        hits: 0,
    }
}

/// Injected failures: a transient error between creating `rd` and the LimaVM leaks nothing; a
/// 409 while propagating `running` is retried (R-APP-T5); an error deleting a child during
/// teardown keeps the App's finalizer until the child is gone (R-APP-I4); the LimaVM deletion
/// requested before the App's still completes the teardown (R-APP-I1).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_app_t5_i4_i1_injected_failures_are_retried() {
    let env = Env::start(200).await;
    let faults = fault_webhook(&env).await;
    inject(&faults, fault("CREATE", "limavms", "rd", 500, 1));
    env.create_app(false, "default").await;
    env.wait_settled(1, 60).await;
    assert_eq!(
        hits(&faults, "CREATE", "limavms"),
        1,
        "the first LimaVM create failed"
    );
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), "default");
    eventually("no input ConfigMap left", 10, || async {
        cms.get_opt("rd").await.unwrap().is_none()
    })
    .await;

    // R-APP-T5: the running patch meets one 409 and is retried.
    inject(&faults, fault("UPDATE", "limavms", "rd", 409, 1));
    let g = env.set_app(json!({"running": true})).await;
    env.wait_settled(g, 60).await;
    assert_eq!(
        hits(&faults, "UPDATE", "limavms"),
        1,
        "the injected conflict was met"
    );
    assert_eq!(
        vm_json(&env, "default").await.unwrap()["spec"]["running"],
        true
    );

    // R-APP-I4: deleting a lingering input ConfigMap fails until cleared.
    inject(&faults, fault("DELETE", "configmaps", "rd", 500, u32::MAX));
    let lingering: ConfigMap =
        serde_json::from_value(json!({"metadata": {"name": "rd"}, "data": {"template": "x: 1\n"}}))
            .unwrap();
    cms.create(&PostParams::default(), &lingering)
        .await
        .unwrap();
    // R-APP-I1: the LimaVM's deletion is requested first (admission out of the way).
    let v: Api<k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration> =
        Api::all(env.client.clone());
    v.delete("limavm-validator", &DeleteParams::default())
        .await
        .unwrap();
    env.vms("default")
        .delete("rd", &DeleteParams::default())
        .await
        .unwrap();
    env.apps()
        .delete("app", &DeleteParams::default())
        .await
        .unwrap();
    eventually("LimaVM gone", 60, || async {
        vm_json(&env, "default").await.is_none()
    })
    .await;
    tokio::time::sleep(Duration::from_secs(3)).await;
    let app = env.app().await;
    assert!(
        app["metadata"]["finalizers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|f| f == "rdd.rancherdesktop.io/cleanup"),
        "R-APP-I4: the App keeps its finalizer while a child cannot be deleted"
    );
    assert!(cms.get_opt("rd").await.unwrap().is_some());
    faults.lock().unwrap().clear();
    wait_gone(&env, 60).await;
    assert!(cms.get_opt("rd").await.unwrap().is_none());
    assert!(!env.instance_dir().exists());
}

/// R-APP-S8: when the LimaVM's own cleanup never ran (its controller is gone and its finalizer
/// was stripped), App teardown still removes the lingering `rd-template`.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_app_s8_teardown_removes_a_lingering_template_copy() {
    let mut env = Env::start(200).await;
    env.create_app(false, "default").await;
    env.wait_settled(1, 60).await;
    env.proc("limavm").term(Duration::from_secs(50));
    env.procs.retain(|p| p.name != "limavm");
    let v: Api<k8s_openapi::api::admissionregistration::v1::ValidatingWebhookConfiguration> =
        Api::all(env.client.clone());
    let m: Api<k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration> =
        Api::all(env.client.clone());
    v.delete("limavm-validator", &DeleteParams::default())
        .await
        .unwrap();
    v.delete("limavm-configmap-validator", &DeleteParams::default())
        .await
        .unwrap();
    m.delete("limavm-defaulter", &DeleteParams::default())
        .await
        .unwrap();
    env.apps()
        .delete("app", &DeleteParams::default())
        .await
        .unwrap();
    let vms = env.vms("default");
    eventually("LimaVM terminating without owned-by-App", 30, || async {
        vm_json(&env, "default").await.is_some_and(|v| {
            v["metadata"]["deletionTimestamp"].is_string()
                && v["metadata"]["finalizers"] == json!(["rdd.rancherdesktop.io/cleanup"])
        })
    })
    .await;
    vms.patch(
        "rd",
        &PatchParams::default(),
        &Patch::Merge(json!({"metadata": {"finalizers": null}})),
    )
    .await
    .unwrap();
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), "default");
    assert!(
        cms.get_opt("rd-template").await.unwrap().is_some(),
        "the copy lingers"
    );
    wait_gone(&env, 30).await;
    assert!(
        cms.get_opt("rd-template").await.unwrap().is_none(),
        "R-APP-S8"
    );
}

/// The LimaVM webhooks (resources.md §2.6) served by limavm-controller, on a standalone LimaVM:
/// the defaulter adds the cleanup finalizer and the template copy, names are unique across
/// namespaces, template ConfigMaps are validated through `limactl template validate`, and the
/// standalone VM runs and is deleted with its copy.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limavm_webhooks_and_a_standalone_vm() {
    let env = Env::start(100).await;
    let cms: Api<ConfigMap> = Api::namespaced(env.client.clone(), "default");
    let bad: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "bad", "labels": {"lima.rancherdesktop.io/template-configmap": "true"}},
        "data": {"template": "arch: cray-1\n"}}))
    .unwrap();
    let err = cms
        .create(&PostParams::default(), &bad)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("failed to validate template")
            && err.contains("field `arch`")
            && err.contains("got `cray-1`"),
        "{err}"
    );
    let empty: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "empty", "labels": {"lima.rancherdesktop.io/template-configmap": "true"}},
        "data": {"other": "x"}}))
    .unwrap();
    let err = cms
        .create(&PostParams::default(), &empty)
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("template ConfigMap must have a \"template\" data entry"),
        "{err}"
    );

    let src: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "src"}, "data": {"template": format!("images:\n- location: {}/distro.v0.2.6.amd64.raw.xz\n  arch: x86_64\n- location: {}/distro.v0.2.6.arm64.raw.xz\n  arch: aarch64\n", images_dir().display(), images_dir().display())}})).unwrap();
    cms.create(&PostParams::default(), &src).await.unwrap();
    let vm = |ns: &str| -> Value2 {
        serde_json::from_value(
            json!({"apiVersion": "lima.rancherdesktop.io/v1alpha1", "kind": "LimaVM",
            "metadata": {"name": "solo", "namespace": ns},
            "spec": {"templateRef": {"name": "src", "namespace": "default"}, "running": true}}),
        )
        .unwrap()
    };
    // A leftover instance of an earlier failed deletion (cli.md §9.9) is replaced.
    let leftover = env.short_dir().join("lima/solo");
    std::fs::create_dir_all(&leftover).unwrap();
    std::fs::write(leftover.join("lima.yaml"), "").unwrap();
    std::fs::write(leftover.join(".fake-leftover"), "").unwrap();
    std::fs::write(leftover.join("lima-version"), "0.0.0").unwrap();
    // An unrelated ConfigMap named like a copy is neither adopted nor overwritten (cli.md §9.7).
    let unrelated: ConfigMap = serde_json::from_value(
        json!({"metadata": {"name": "dup-template"}, "data": {"mine": "yes"}}),
    )
    .unwrap();
    cms.create(&PostParams::default(), &unrelated)
        .await
        .unwrap();
    let mut dup = vm("default");
    dup.metadata.name = Some("dup".into());
    for dry_run in [true, false] {
        let pp = PostParams {
            dry_run,
            ..Default::default()
        };
        let err = env
            .vms("default")
            .create(&pp, &dup)
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("already exists") && err.contains("dup-template"),
            "{err}"
        );
    }
    assert!(env.vms("default").get_opt("dup").await.unwrap().is_none());
    assert_eq!(
        cms.get("dup-template").await.unwrap().data.unwrap()["mine"],
        "yes"
    );

    let created = env
        .vms("default")
        .create(&PostParams::default(), &vm("default"))
        .await
        .unwrap();
    assert_eq!(created.finalizers(), ["rdd.rancherdesktop.io/cleanup"]);
    let copy = cms.get("solo-template").await.unwrap();
    assert_eq!(copy.finalizers(), ["rdd.rancherdesktop.io/owned-by-LimaVM"]);
    assert_eq!(
        copy.data.unwrap()["template"],
        src.data.unwrap()["template"]
    );
    let nss: Api<Namespace> = Api::all(env.client.clone());
    nss.create(
        &PostParams::default(),
        &serde_json::from_value(json!({"metadata": {"name": "other"}})).unwrap(),
    )
    .await
    .unwrap();
    let err = env
        .vms("other")
        .create(&PostParams::default(), &vm("other"))
        .await
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("LimaVM name \"solo\" is already used in namespace \"default\""),
        "{err}"
    );
    // The owned copy cannot be deleted on its own.
    let err = cms
        .delete("solo-template", &DeleteParams::default())
        .await
        .unwrap_err()
        .to_string();
    assert!(err.contains("owned by LimaVM"), "{err}");

    let vms = env.vms("default");
    eventually("standalone VM running", 30, || async {
        vms.get("solo").await.ok().is_some_and(|v| {
            let v = serde_json::to_value(v).unwrap();
            cond(&v, "Running").is_some_and(|c| c["status"] == "True")
                && v["status"]["templateConfigMap"] == "solo-template"
        })
    })
    .await;
    let pid = read_pid(&env.short_dir().join("lima/solo/ha.pid"));
    assert!(
        !leftover.join(".fake-leftover").exists(),
        "the leftover was replaced"
    );
    assert!(
        std::fs::read_to_string(leftover.join("lima.yaml"))
            .unwrap()
            .contains("images:")
    );
    // Step 14: the host architecture's image was decompressed into `image` before Created.
    let arch = if cfg!(target_arch = "aarch64") {
        "arm64"
    } else {
        "amd64"
    };
    let image = std::fs::read_to_string(leftover.join("image")).unwrap();
    assert!(
        image.starts_with(&format!("rdd test disk image ({arch})")),
        "{image}"
    );
    // resources.md §2.4: each LimaVM condition change is an event.
    let events: Api<Event> = Api::namespaced(env.client.clone(), "default");
    let changed = events
        .list(&Default::default())
        .await
        .unwrap()
        .items
        .into_iter()
        .filter(|e| {
            e.involved_object.name.as_deref() == Some("solo")
                && e.reason.as_deref() == Some("ConditionChanged")
        })
        .count();
    assert!(changed >= 2, "ConditionChanged events: {changed}");
    assert!(alive(pid));
    vms.delete("solo", &DeleteParams::default()).await.unwrap();
    eventually("standalone VM deleted", 30, || async {
        vms.get_opt("solo").await.unwrap().is_none()
    })
    .await;
    assert!(!alive(pid));
    assert!(cms.get_opt("solo-template").await.unwrap().is_none());
    assert!(!env.short_dir().join("lima/solo").exists());

    // cli.md §9.9: an image that cannot be downloaded fails creation, naming the URL's host,
    // and leaves no instance behind.
    let bad: ConfigMap = serde_json::from_value(json!({"metadata": {"name": "bad-src"}, "data": {"template": "images:\n- location: https://invalid.example.test/nonexistent.iso\n  arch: x86_64\n- location: https://invalid.example.test/nonexistent.iso\n  arch: aarch64\n"}})).unwrap();
    cms.create(&PostParams::default(), &bad).await.unwrap();
    let bad_vm: Value2 = serde_json::from_value(
        json!({"apiVersion": "lima.rancherdesktop.io/v1alpha1", "kind": "LimaVM",
        "metadata": {"name": "badimg", "namespace": "default"},
        "spec": {"templateRef": {"name": "bad-src", "namespace": "default"}, "running": false}}),
    )
    .unwrap();
    vms.create(&PostParams::default(), &bad_vm).await.unwrap();
    eventually("Created=False/CreateFailed naming the host", 30, || async {
        vms.get("badimg").await.ok().is_some_and(|v| {
            let v = serde_json::to_value(v).unwrap();
            cond(&v, "Created").is_some_and(|c| {
                c["status"] == "False"
                    && c["reason"] == "CreateFailed"
                    && c["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("invalid.example.test"))
            })
        })
    })
    .await;
    // Creation is retried with backoff (each attempt creates, fails to download, deletes);
    // deleting the LimaVM leaves nothing behind.
    vms.delete("badimg", &DeleteParams::default())
        .await
        .unwrap();
    eventually("VM with a bad image deleted", 30, || async {
        vms.get_opt("badimg").await.unwrap().is_none()
    })
    .await;
    assert!(!env.short_dir().join("lima/badimg").exists());
}

/// The product path on this machine: `running=true` brings the stand-in's engine up, the
/// docker-gateway (started with only the instance identity) connects to the instance Docker
/// socket; `running=false` takes it away again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn r_app_t8_docker_gateway_follows_the_vm() {
    let mut env = Env::start(100).await;
    let admin = free_port();
    let child = env
        .cmd(&bin("docker-gateway"))
        .env("RDD_ADMIN_ADDR", format!("127.0.0.1:{admin}"))
        .env("RDD_LOG_LEVEL", "error")
        .stdout(Stdio::null())
        .spawn()
        .unwrap();
    env.procs.push(Proc {
        name: "gateway",
        child,
        admin,
    });
    let connected = |port: u16| -> Option<bool> {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(("127.0.0.1", port)).ok()?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
            .ok()?;
        let mut body = String::new();
        s.read_to_string(&mut body).ok()?;
        let line = body
            .lines()
            .find(|l| l.starts_with("docker_gateway_connected"))?;
        Some(line.trim_end().ends_with(" 1"))
    };
    env.create_app(true, "default").await;
    env.wait_settled(1, 60).await;
    eventually("gateway connected to the instance Docker", 60, || async {
        connected(admin) == Some(true)
    })
    .await;
    let g = env.set_app(json!({"running": false})).await;
    env.wait_settled(g, 60).await;
    eventually("gateway disconnected after the VM stopped", 60, || async {
        connected(admin) == Some(false)
    })
    .await;
}
