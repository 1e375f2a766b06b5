//! `rdd-bench app`: App `spec.running` patch → `Settled=True` (for the patch's generation)
//! observed by a watch, with `rdd svc serve`, app-controller, limavm-controller and the
//! `limactl-standin` (all next to this binary) as real processes. The stand-in's host agent
//! proxies the instance Docker socket to the machine's Docker; its boot delay is `--boot-ms`.
//! (`rdd set running=true` does not exist yet; this measures the same path without the CLI.)

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use futures::{StreamExt, TryStreamExt};
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, Patch, PatchParams, PostParams, WatchEvent, WatchParams};
use kube::core::{ApiResource, DynamicObject};
use serde_json::json;

#[derive(clap::Args)]
pub struct Args {
    /// Start/stop rounds.
    #[arg(long, default_value_t = 10)]
    rounds: usize,
    /// Simulated guest boot time of the stand-in (ms) between `sshLocalPort` and `running`.
    #[arg(long, default_value_t = 0)]
    boot_ms: u64,
}

fn sibling(name: &str) -> anyhow::Result<PathBuf> {
    let exe = std::env::current_exe()?;
    let p = exe
        .parent()
        .ok_or_else(|| anyhow::anyhow!("no parent"))?
        .join(name);
    anyhow::ensure!(
        p.exists(),
        "{} not found: build it with `cargo build --release -p rdd -p app-controller -p limavm-controller -p limactl-standin -p rdd-bench`",
        p.display()
    );
    Ok(p)
}

struct Procs(Vec<Child>, PathBuf);

impl Drop for Procs {
    fn drop(&mut self) {
        for c in self.0.iter_mut().rev() {
            rdd_testkit::terminate(c, Duration::from_secs(50));
        }
        // A host agent that survived (it should not) is killed by its PID file.
        if let Ok(pid) = std::fs::read_to_string(self.1.join("ha.pid"))
            && let Ok(pid) = pid.trim().parse::<i32>()
        {
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

fn app_resource() -> ApiResource {
    ApiResource {
        group: "app.rancherdesktop.io".into(),
        version: "v1alpha1".into(),
        api_version: "app.rancherdesktop.io/v1alpha1".into(),
        kind: "App".into(),
        plural: "apps".into(),
    }
}

fn settled_for(obj: &DynamicObject, generation: i64) -> bool {
    obj.data["status"]["conditions"]
        .as_array()
        .into_iter()
        .flatten()
        .any(|c| {
            c["type"] == "Settled"
                && c["status"] == "True"
                && c["observedGeneration"].as_i64().unwrap_or(0) >= generation
        })
}

/// Patch `spec.running` and wait (watch from the patch's resourceVersion) for Settled.
async fn flip(api: &Api<DynamicObject>, running: bool) -> anyhow::Result<Duration> {
    let t0 = Instant::now();
    let patched = api
        .patch(
            "app",
            &PatchParams::default(),
            &Patch::Merge(json!({"spec": {"running": running}})),
        )
        .await?;
    let generation = patched.metadata.generation.unwrap_or(0);
    let rv = patched
        .metadata
        .resource_version
        .clone()
        .unwrap_or_default();
    if settled_for(&patched, generation) {
        return Ok(t0.elapsed());
    }
    let wp = WatchParams::default()
        .fields("metadata.name=app")
        .timeout(120);
    let mut stream = api.watch(&wp, &rv).await?.boxed();
    while let Some(ev) = stream.try_next().await? {
        if let WatchEvent::Modified(o) = ev
            && settled_for(&o, generation)
        {
            return Ok(t0.elapsed());
        }
    }
    anyhow::bail!("watch ended before Settled=True")
}

fn token(rdd: &Path, home: &Path, inst: &str, controller: &str, out: &Path) -> anyhow::Result<()> {
    let st = Command::new(rdd)
        .args([
            "svc",
            "token",
            "create",
            "--controller",
            controller,
            "--kubeconfig",
        ])
        .arg(out)
        .env("HOME", home)
        .env("RDD_INSTANCE", inst)
        .status()?;
    anyhow::ensure!(st.success(), "rdd svc token create failed");
    Ok(())
}

fn pct(v: &[f64], p: f64) -> f64 {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.total_cmp(b));
    s[((s.len() as f64 - 1.0) * p).round() as usize]
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let tmp = tempfile::tempdir()?;
    let home = tmp.path().to_path_buf();
    let inst = "bench";
    let dir = home.join(".local/share/rancher-desktop-bench");
    let rdd = sibling("rdd")?;
    let mut procs = Procs(vec![], home.join(".rdbench/lima/rd"));
    procs.0.push(
        Command::new(&rdd)
            .args(["svc", "serve", "--secure-port", "0", "--controllers="])
            .env("HOME", &home)
            .env("RDD_INSTANCE", inst)
            .env("RDD_LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .spawn()?,
    );
    let kubeconfig = dir.join("config.yaml");
    let deadline = Instant::now() + Duration::from_secs(30);
    while !kubeconfig.exists() {
        anyhow::ensure!(Instant::now() < deadline, "rdd svc serve did not start");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let kc = kube::config::Kubeconfig::read_from(&kubeconfig)?;
    let client = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?,
    )?;
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    for text in [
        include_str!("../../deploy/crds/apps.app.rancherdesktop.io.yaml"),
        include_str!("../../deploy/crds/limavms.lima.rancherdesktop.io.yaml"),
    ] {
        let crd: CustomResourceDefinition = serde_json::from_value(serde_saphyr::from_str(text)?)?;
        crds.create(&PostParams::default(), &crd).await?;
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let ctl = |name: &str| -> anyhow::Result<Child> {
        let kcfg = dir.join(format!("{name}.kubeconfig"));
        token(&rdd, &home, inst, name, &kcfg)?;
        Ok(Command::new(sibling(name)?)
            .env("HOME", &home)
            .env("RDD_INSTANCE", inst)
            .env("RDD_KUBECONFIG", &kcfg)
            .env("RDD_LOG_LEVEL", "warn")
            .env("RDD_LIMACTL", sibling("limactl-standin")?)
            .env(
                "RDD_IMAGE_BASE_URL",
                concat!(env!("CARGO_MANIFEST_DIR"), "/../testkit/fixtures/images"),
            )
            .env("LIMACTL_STANDIN_BOOT_MS", a.boot_ms.to_string())
            .stdout(Stdio::null())
            .spawn()?)
    };
    procs.0.push(ctl("limavm-controller")?);
    let hooks: Api<k8s_openapi::api::admissionregistration::v1::MutatingWebhookConfiguration> =
        Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    while hooks.get_opt("limavm-defaulter").await?.is_none() {
        anyhow::ensure!(
            Instant::now() < deadline,
            "limavm-controller did not register its webhooks"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    procs.0.push(ctl("app-controller")?);
    let apps: Api<DynamicObject> = Api::all_with(client.clone(), &app_resource());
    let app: DynamicObject = serde_json::from_value(json!({
        "apiVersion": "app.rancherdesktop.io/v1alpha1", "kind": "App",
        "metadata": {"name": "app"}, "spec": {"running": false}
    }))?;
    let t0 = Instant::now();
    apps.create(&PostParams::default(), &app).await?;
    let deadline = Instant::now() + Duration::from_secs(60);
    while !settled_for(&apps.get("app").await?, 1) {
        anyhow::ensure!(Instant::now() < deadline, "App did not settle");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let create = t0.elapsed();
    let (mut up, mut down) = (vec![], vec![]);
    for _ in 0..a.rounds {
        up.push(flip(&apps, true).await?.as_secs_f64() * 1000.0);
        down.push(flip(&apps, false).await?.as_secs_f64() * 1000.0);
    }
    // The same from the command line: `rdd set running=…` returns once the App is Settled for
    // its own generation (cli.md §5.4), so its wall time is the user's wait.
    let rdd_set = |value: &str| -> anyhow::Result<f64> {
        let t = Instant::now();
        let o = Command::new(&rdd)
            .args(["set", "--timeout=60s", &format!("running={value}")])
            .env("HOME", &home)
            .env("RDD_INSTANCE", inst)
            .env("RDD_LOG_LEVEL", "warn")
            .output()?;
        anyhow::ensure!(
            o.status.success(),
            "rdd set running={value}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        Ok(t.elapsed().as_secs_f64() * 1000.0)
    };
    let mut cli_up = vec![];
    for _ in 0..a.rounds.min(5) {
        cli_up.push(rdd_set("true")?);
        rdd_set("false")?;
    }
    // `rdd svc start` → ready, in a fresh instance of its own (no controllers: the API server's
    // start as the user sees it; the command returns once the control plane answers).
    let fresh = tempfile::tempdir()?;
    let svc = |args: &[&str]| -> anyhow::Result<f64> {
        let t = Instant::now();
        let o = Command::new(&rdd)
            .args(args)
            .env("HOME", fresh.path())
            .env("RDD_INSTANCE", "benchstart")
            .env("RDD_LOG_LEVEL", "warn")
            .output()?;
        anyhow::ensure!(
            o.status.success(),
            "rdd {args:?}: {}",
            String::from_utf8_lossy(&o.stderr)
        );
        Ok(t.elapsed().as_secs_f64() * 1000.0)
    };
    let mut starts = vec![];
    for _ in 0..3 {
        starts.push(svc(&["svc", "start", "--controllers="])?);
        svc(&["svc", "stop"])?;
    }
    out!("| figure | value | goal |\n|---|---|---|");
    out!(
        "| App create (running=false) → Settled=True | {:.0} ms | — |",
        create.as_secs_f64() * 1000.0
    );
    out!(
        "| running=true → Settled=True, {} rounds, stand-in boot {} ms | p50 {:.0} ms, max {:.0} ms | ≤ 2000 ms |",
        a.rounds,
        a.boot_ms,
        pct(&up, 0.5),
        pct(&up, 1.0)
    );
    out!(
        "| running=false → Settled=True, {} rounds | p50 {:.0} ms, max {:.0} ms | — |",
        a.rounds,
        pct(&down, 0.5),
        pct(&down, 1.0)
    );
    out!(
        "| `rdd set running=true` → returns Settled (CLI wall time), {} rounds | p50 {:.0} ms, max {:.0} ms | ≤ 2000 ms |",
        cli_up.len(),
        pct(&cli_up, 0.5),
        pct(&cli_up, 1.0)
    );
    out!(
        "| `rdd svc start --controllers=` → returns ready (CLI wall time), 3 rounds | p50 {:.0} ms, max {:.0} ms | ≤ 1000 ms |",
        pct(&starts, 0.5),
        pct(&starts, 1.0)
    );
    Ok(())
}
