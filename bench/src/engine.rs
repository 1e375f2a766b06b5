//! Engine figures beyond containers (issue 12): cold full sync of N volumes and of N/5 images
//! against a bollard list + inspect floor measured in the same run, idle churn (API writes, API
//! requests and Docker calls over a quiet window), and the RSS of every process.
//!
//! Starts `rdd svc serve`, `docker-gateway` and the volume-, image- and container-controllers
//! (the binaries next to this one) in a private HOME. Everything it makes in Docker carries a
//! unique `rdd-test=<id>` label (the controllers' label selector); images are imported with
//! that label and tagged `rddt-<id>-img:<tag>`; all of it is removed at the end.

use std::collections::HashMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bollard::Docker;
use bollard::models::VolumeCreateRequest;
use bollard::query_parameters::{ListImagesOptions, ListVolumesOptions, TagImageOptions};
use futures::StreamExt;
use kube::api::{Api, DynamicObject, PostParams};
use kube::discovery::ApiResource;
use serde_json::json;

use crate::containers::{
    Proc, app_resource, docker_calls, free_port, http_get, kubectl, pct, set_running, sibling,
};

/// Tags on each image of the image cold sync ("images with several tags").
const TAGS_PER_IMAGE: usize = 2;

#[derive(clap::Args, Clone)]
pub struct Args {
    /// Volumes for the volume cold sync; N/5 images with two tags each for the image one.
    #[arg(long, default_value_t = 1000)]
    pub n: usize,
    /// Length of the idle window, seconds.
    #[arg(long, default_value_t = 10)]
    pub idle_seconds: u64,
    /// Concurrent inspects of the bollard floors (the controllers' default sync concurrency).
    #[arg(long, default_value_t = 16)]
    pub concurrency: usize,
}

fn rs(kind: &str, plural: &str) -> ApiResource {
    ApiResource {
        group: "containers.rancherdesktop.io".into(),
        version: "v1alpha1".into(),
        api_version: "containers.rancherdesktop.io/v1alpha1".into(),
        kind: kind.into(),
        plural: plural.into(),
    }
}

fn label_filter(label: &str) -> HashMap<String, Vec<String>> {
    HashMap::from([("label".to_string(), vec![label.to_string()])])
}

async fn volume_floor(docker: &Docker, label: &str, conc: usize) -> anyhow::Result<f64> {
    let t = Instant::now();
    let list = docker
        .list_volumes(Some(ListVolumesOptions {
            filters: Some(label_filter(label)),
        }))
        .await?;
    let names: Vec<String> = list
        .volumes
        .unwrap_or_default()
        .into_iter()
        .map(|v| v.name)
        .collect();
    let ok = futures::stream::iter(names)
        .map(|n| async move { docker.inspect_volume(&n).await.is_ok() })
        .buffer_unordered(conc)
        .filter(|ok| futures::future::ready(*ok))
        .count()
        .await;
    if ok == 0 {
        bail!("volume floor inspected nothing");
    }
    Ok(t.elapsed().as_secs_f64())
}

async fn image_floor(docker: &Docker, label: &str, conc: usize) -> anyhow::Result<f64> {
    let t = Instant::now();
    let list = docker
        .list_images(Some(ListImagesOptions {
            all: false,
            filters: Some(label_filter(label)),
            ..Default::default()
        }))
        .await?;
    let ids: Vec<String> = list.into_iter().map(|i| i.id).collect();
    let ok = futures::stream::iter(ids)
        .map(|id| async move { docker.inspect_image(&id).await.is_ok() })
        .buffer_unordered(conc)
        .filter(|ok| futures::future::ready(*ok))
        .count()
        .await;
    if ok == 0 {
        bail!("image floor inspected nothing");
    }
    Ok(t.elapsed().as_secs_f64())
}

async fn condition(apps: &Api<DynamicObject>, type_: &str) -> Option<String> {
    let app = apps.get_opt("app").await.ok()??;
    app.data["status"]["conditions"]
        .as_array()?
        .iter()
        .find(|c| c["type"] == type_)
        .and_then(|c| c["reason"].as_str().map(str::to_string))
}

async fn count(client: &kube::Client, ns: &str, r: &ApiResource) -> anyhow::Result<usize> {
    let api: Api<DynamicObject> = Api::namespaced_with(client.clone(), ns, r);
    Ok(api.list(&Default::default()).await?.items.len())
}

/// Spawn a controller at t0 (App already running) and time until `synced` is Connected with `n`
/// mirrors of `r` in NS.
#[allow(clippy::too_many_arguments)]
async fn cold_sync(
    spawn: impl FnOnce() -> anyhow::Result<Proc>,
    apps: &Api<DynamicObject>,
    client: &kube::Client,
    ns: &str,
    synced: &str,
    r: &ApiResource,
    n: usize,
) -> anyhow::Result<(Proc, f64)> {
    let t = Instant::now();
    let p = spawn()?;
    loop {
        if condition(apps, synced).await.as_deref() == Some("Connected")
            && count(client, ns, r).await? >= n
        {
            break;
        }
        if t.elapsed() > Duration::from_secs(300) {
            bail!("{synced} did not reach Connected with {n} mirrors");
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    Ok((p, t.elapsed().as_secs_f64()))
}

/// Docker calls the gateway made, by operation.
fn calls_by_op(admin: &str) -> std::collections::BTreeMap<String, u64> {
    let mut out = std::collections::BTreeMap::new();
    for l in http_get(admin, "/metrics").lines() {
        let Some(rest) = l.strip_prefix("docker_gateway_docker_requests_total{") else {
            continue;
        };
        let op = rest
            .split("operation=\"")
            .nth(1)
            .and_then(|s| s.split('"').next())
            .unwrap_or("")
            .to_string();
        let n = l
            .rsplit(' ')
            .next()
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0) as u64;
        *out.entry(op).or_insert(0) += n;
    }
    out
}

fn requests(admin: &str) -> u64 {
    http_get(admin, "/metrics")
        .lines()
        .filter(|l| l.starts_with("rest_client_requests_total{"))
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum::<f64>() as u64
}

/// The store's current revision (every write anywhere increments it).
async fn revision(client: &kube::Client) -> anyhow::Result<u64> {
    let api: Api<k8s_openapi::api::core::v1::Namespace> = Api::all(client.clone());
    let l = api.list(&Default::default()).await?;
    Ok(l.metadata
        .resource_version
        .unwrap_or_default()
        .parse()
        .unwrap_or(0))
}

pub async fn run(a: Args) -> anyhow::Result<()> {
    let rdd = sibling("rdd")?;
    let gw_bin = sibling("docker-gateway")?;
    let docker = Docker::connect_with_unix_defaults()?;
    let scope = rdd_testkit::Scope::new();
    let label = scope.label();
    let home = tempfile::tempdir()?;
    let server = Proc(
        Command::new(&rdd)
            .args(["svc", "serve", "--secure-port", "0", "--controllers="])
            .env("HOME", home.path())
            .env("RDD_INSTANCE", "bench")
            .env("RDD_LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?,
    );
    let kubeconfig = home
        .path()
        .join(".local/share/rancher-desktop-bench/config.yaml");
    let t0 = Instant::now();
    while !kubeconfig.exists() {
        if t0.elapsed() > Duration::from_secs(60) {
            bail!("rdd svc serve did not start");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let kc = kube::config::Kubeconfig::read_from(&kubeconfig)?;
    let client = kube::Client::try_from(
        kube::Config::from_custom_kubeconfig(kc, &Default::default()).await?,
    )?;
    let root = std::path::PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    for d in ["deploy/crds", "deploy/admission"] {
        kubectl(
            home.path(),
            &kubeconfig,
            &["apply", "-f", root.join(d).to_str().unwrap_or("")],
        )?;
    }
    kubectl(
        home.path(),
        &kubeconfig,
        &[
            "wait",
            "--for=condition=Established",
            "crd",
            "--all",
            "--timeout=60s",
        ],
    )?;
    let gw_socket = home.path().join("gateway.sock");
    let gw_admin = format!("127.0.0.1:{}", free_port()?);
    let gateway = Proc(
        Command::new(gw_bin)
            .args(["--docker-host", "unix:///var/run/docker.sock"])
            .arg("--socket")
            .arg(&gw_socket)
            .args(["--admin-addr", &gw_admin])
            .env("HOME", home.path())
            .env("RDD_LOG_LEVEL", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()?,
    );
    while !gw_socket.exists() {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let ns = "bench-e";
    kubectl(home.path(), &kubeconfig, &["create", "namespace", ns])?;
    let apps: Api<DynamicObject> = Api::all_with(client.clone(), &app_resource());
    apps.create(
        &PostParams::default(),
        &serde_json::from_value(json!({
            "apiVersion": "app.rancherdesktop.io/v1alpha1", "kind": "App",
            "metadata": {"name": "app"},
            "spec": {"running": true, "namespace": ns, "containerEngine": {"name": "moby"}},
        }))?,
    )
    .await?;
    set_running(&apps, true).await?;

    // Load: N volumes; N image tags over a few imported images (each its own, labelled).
    let t = Instant::now();
    let labels = HashMap::from([(rdd_testkit::LABEL.to_string(), scope.id.clone())]);
    let made: Vec<anyhow::Result<()>> = futures::stream::iter(0..a.n)
        .map(|i| {
            let docker = docker.clone();
            let req = VolumeCreateRequest {
                name: Some(scope.name(&format!("v{i}"))),
                labels: Some(labels.clone()),
                ..Default::default()
            };
            async move {
                docker.create_volume(req).await?;
                Ok(())
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    for r in made {
        r?;
    }
    // N/5 images (200 at N = 1000), each with two tags: one mirror per tag (§4.7.3).
    let images = (a.n / 5).max(2);
    let repo = scope.name("img");
    let mut tags = Vec::new();
    for (i, id) in scope.images(images).into_iter().enumerate() {
        for j in 0..TAGS_PER_IMAGE {
            tags.push((id.clone(), format!("i{i}-t{j}")));
        }
    }
    let n_tags = tags.len();
    let tagged: Vec<anyhow::Result<()>> = futures::stream::iter(tags)
        .map(|(id, tag)| {
            let docker = docker.clone();
            let repo = repo.clone();
            async move {
                docker
                    .tag_image(
                        &id,
                        Some(TagImageOptions {
                            repo: Some(repo),
                            tag: Some(tag),
                        }),
                    )
                    .await?;
                Ok(())
            }
        })
        .buffer_unordered(8)
        .collect()
        .await;
    for r in tagged {
        r?;
    }
    let containers: Vec<String> = (0..10)
        .map(|i| scope.container(&format!("c{i}"), i % 2 == 0, &["sleep", "100000"]))
        .collect();
    eprintln!(
        "engine: {} volumes, {n_tags} image tags on {images} images, {} containers made in {:.1} s",
        a.n,
        containers.len(),
        t.elapsed().as_secs_f64()
    );

    let (mut vf, mut imf) = (Vec::new(), Vec::new());
    for _ in 0..3 {
        vf.push(volume_floor(&docker, &label, a.concurrency).await?);
        imf.push(image_floor(&docker, &label, a.concurrency).await?);
    }
    let (vfloor, ifloor) = (pct(&mut vf, 0.5), pct(&mut imf, 0.5));

    let mut admins = Vec::new();
    let spawn = |name: &str, admins: &mut Vec<(String, String)>| -> anyhow::Result<Proc> {
        let kc = home.path().join(format!("{name}.yaml"));
        let o = Command::new(&rdd)
            .args([
                "svc",
                "token",
                "create",
                "--controller",
                name,
                "--kubeconfig",
            ])
            .arg(&kc)
            .env("HOME", home.path())
            .env("RDD_INSTANCE", "bench")
            .output()?;
        if !o.status.success() {
            bail!("token: {}", String::from_utf8_lossy(&o.stderr));
        }
        let admin = format!("127.0.0.1:{}", free_port()?);
        admins.push((name.to_string(), admin.clone()));
        Ok(Proc(
            Command::new(sibling(name)?)
                .env("HOME", home.path())
                .env("RDD_INSTANCE", "bench")
                .env("RDD_KUBECONFIG", &kc)
                .env("RDD_GATEWAY_SOCKET", &gw_socket)
                .env("RDD_LABEL_SELECTOR", &label)
                .env("RDD_ADMIN_ADDR", &admin)
                .env("RDD_SWEEP_WAIT_SECONDS", "120")
                .env("RDD_LOG_LEVEL", "warn")
                .stdout(Stdio::null())
                .stderr(Stdio::inherit())
                .spawn()
                .context(name.to_string())?,
        ))
    };
    let (volume_ctl, vcold) = cold_sync(
        || spawn("volume-controller", &mut admins),
        &apps,
        &client,
        ns,
        "VolumesSynced",
        &rs("Volume", "volumes"),
        a.n,
    )
    .await?;
    let (image_ctl, icold) = cold_sync(
        || spawn("image-controller", &mut admins),
        &apps,
        &client,
        ns,
        "ImagesSynced",
        &rs("Image", "images"),
        n_tags,
    )
    .await?;
    let (container_ctl, _) = cold_sync(
        || spawn("container-controller", &mut admins),
        &apps,
        &client,
        ns,
        "ContainersSynced",
        &rs("Container", "containers"),
        containers.len(),
    )
    .await?;

    // Idle: nothing changes in Docker or the API for the window.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let rev0 = revision(&client).await?;
    let calls0 = docker_calls(&gw_admin);
    let ops0 = calls_by_op(&gw_admin);
    let req0: Vec<u64> = admins.iter().map(|(_, a)| requests(a)).collect();
    tokio::time::sleep(Duration::from_secs(a.idle_seconds)).await;
    let writes = revision(&client).await? - rev0;
    let calls = docker_calls(&gw_admin) - calls0;
    let ops: Vec<String> = calls_by_op(&gw_admin)
        .into_iter()
        .filter_map(|(op, n)| {
            let d = n - ops0.get(&op).copied().unwrap_or(0);
            (d > 0).then(|| format!("{op} {d}"))
        })
        .collect();
    let ops = if ops.is_empty() {
        String::new()
    } else {
        format!(": {}", ops.join(", "))
    };
    let reqs: u64 = admins
        .iter()
        .zip(req0)
        .map(|((_, a), r0)| requests(a) - r0)
        .sum();
    let rss = [
        (
            "API server (rdd svc serve)",
            server.rss_mib(),
            "≤ 100 MiB at 10 000 objects (see the API server section)",
        ),
        ("docker-gateway", gateway.rss_mib(), "≤ 15 MiB"),
        (
            "container-controller (10 mirrors)",
            container_ctl.rss_mib(),
            "≤ 20 MiB",
        ),
        ("image-controller", image_ctl.rss_mib(), "≤ 20 MiB"),
        ("volume-controller", volume_ctl.rss_mib(), "≤ 20 MiB"),
    ];

    out!("| figure | value | baseline / goal |");
    out!("|---|---|---|");
    out!(
        "| raw list + inspect of {} volumes through bollard, concurrency {}, median of 3 | {:.0} ms | baseline |",
        a.n,
        a.concurrency,
        vfloor * 1000.0
    );
    out!(
        "| cold sync of {} volumes (volume-controller start → VolumesSynced=Connected, {} mirrors) | {:.0} ms | **{:.1}×** floor (goal ≤ 1.5×) |",
        a.n,
        a.n,
        vcold * 1000.0,
        vcold / vfloor
    );
    out!(
        "| raw list + inspect of {images} images ({n_tags} tags) through bollard, concurrency {}, median of 3 | {:.0} ms | baseline |",
        a.concurrency,
        ifloor * 1000.0
    );
    out!(
        "| cold sync of {images} images (image-controller start → ImagesSynced=Connected, {n_tags} tag mirrors) | {:.0} ms | **{:.1}×** floor (goal ≤ 1.5×) |",
        icold * 1000.0,
        icold / ifloor
    );
    out!(
        "| idle churn over {} s (three controllers, {} volumes, {n_tags} tags, {} containers mirrored) | {writes} API writes, {calls} Docker calls{ops} ({reqs} API requests by the controllers) | goal 0 and 0 |",
        a.idle_seconds,
        a.n,
        containers.len()
    );
    for (name, mib, goal) in rss {
        out!("| RSS {name} | {mib:.1} MiB | goal {goal} |");
    }
    drop(container_ctl);
    drop(image_ctl);
    drop(volume_ctl);
    drop(gateway);
    drop(server);
    drop(scope);
    Ok(())
}
