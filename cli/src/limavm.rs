//! `rdd limavm` (alias `rdd lima`; cli.md §8): LimaVMs from the command line. Every command but
//! `logs` starts the control plane when needed (§3.8). Waits end with exit 4 and `context
//! deadline exceeded` at their deadline.
//!
//! `shell` runs `limactl shell` (the limactl of `RDD_LIMACTL`, as the limavm-controller uses),
//! which connects with Lima's own SSH options for the instance.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use clap::{Args, Subcommand};
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, DeleteParams, ListParams, Patch, PatchParams, PostParams};
use kube::{Resource, ResourceExt};
use rdd_api::limavm::{LimaVM, LimaVMSpec, TemplateRef};
use rdd_api::names;
use serde_json::json;

use crate::exit::parse_duration;
use crate::set::classify;
use crate::svc::control;
use crate::wait::{condition, until};
use rdd_process::instance::Instance;

#[derive(Subcommand, Debug)]
pub enum LimaCommand {
    /// Create a LimaVM from a template ConfigMap (TEMPLATE is its name) or a template file.
    Create(CreateArgs),
    /// Set spec.running=true and wait for Running=True.
    Start(NameWait),
    /// Set spec.running=false and wait for Running=False.
    Stop(NameWait),
    /// Restart the VM (starting it if stopped) and wait until it has restarted.
    Restart(NameWait),
    /// Delete the LimaVM (and its instance) and wait until it is gone.
    Delete(NameWait),
    /// Print the host agent's log (stderr; stdout with -o).
    #[command(visible_alias = "log")]
    Logs(LogsArgs),
    /// Run a shell or a command in the running VM.
    Shell(ShellArgs),
    /// Edit the VM's template (its template ConfigMap) in $KUBE_EDITOR, $EDITOR or $VISUAL.
    Edit {
        /// LimaVM name.
        name: String,
    },
}

#[derive(Args, Debug)]
pub struct Wait {
    /// Wait until the change is carried out.
    #[arg(long, default_value = "true", action = clap::ArgAction::Set)]
    pub wait: bool,
    /// Deadline for --wait (Go duration; 0 = none).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Args, Debug)]
pub struct NameWait {
    /// LimaVM name (unique across namespaces).
    pub name: String,
    #[command(flatten)]
    pub wait: Wait,
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// LimaVM name.
    pub name: String,
    /// A ConfigMap name (key `template`) or the path of a template file.
    pub template: String,
    /// Namespace of the LimaVM (and of the template ConfigMap).
    #[arg(short = 'n', long, default_value = "default")]
    pub namespace: String,
    /// Validate through the API server without creating anything.
    #[arg(long)]
    pub dry_run: bool,
    /// Create it running (spec.running=true).
    #[arg(long)]
    pub start: bool,
    #[command(flatten)]
    pub wait: Wait,
}

#[derive(Args, Debug)]
pub struct LogsArgs {
    /// LimaVM name.
    pub name: String,
    /// Show ha.stdout.log (the host agent's events) instead of ha.stderr.log.
    #[arg(short = 'o', long = "stdout")]
    pub stdout: bool,
    /// Keep printing as the log grows.
    #[arg(short = 'f', long)]
    pub follow: bool,
}

#[derive(Args, Debug)]
pub struct ShellArgs {
    /// Shell to run the command with.
    #[arg(long)]
    pub shell: Option<String>,
    /// Working directory in the VM.
    #[arg(long)]
    pub workdir: Option<String>,
    /// LimaVM name.
    pub name: String,
    /// Command and arguments (default: an interactive shell).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    pub command: Vec<String>,
}

pub async fn run(inst: &Instance, cmd: LimaCommand) -> anyhow::Result<i32> {
    if let LimaCommand::Logs(a) = &cmd {
        let file = if a.stdout {
            "ha.stdout.log"
        } else {
            "ha.stderr.log"
        };
        control::tail(&lima_home(inst).join(&a.name).join(file), a.follow).await?;
        return Ok(0);
    }
    control::ensure_running(inst).await?;
    let client = control::client(inst).await?;
    match cmd {
        LimaCommand::Create(a) => create(&client, a).await,
        LimaCommand::Start(a) => set_running(&client, a, true).await,
        LimaCommand::Stop(a) => set_running(&client, a, false).await,
        LimaCommand::Restart(a) => restart(&client, a).await,
        LimaCommand::Delete(a) => delete(&client, a).await,
        LimaCommand::Shell(a) => shell(inst, &client, a).await,
        LimaCommand::Edit { name } => edit(&client, &name).await,
        LimaCommand::Logs(_) => Ok(0),
    }
}

fn lima_home(inst: &Instance) -> PathBuf {
    inst.short_dir().join("lima")
}

fn limactl() -> String {
    std::env::var("RDD_LIMACTL")
        .ok()
        .filter(|s| !s.is_empty())
        .unwrap_or_else(|| "limactl".into())
}

/// Kubernetes' DNS-1123 subdomain: what a ConfigMap name must be.
fn is_dns1123_subdomain(s: &str) -> bool {
    !s.is_empty()
        && s.len() <= 253
        && s.split('.').all(|label| {
            !label.is_empty()
                && label
                    .chars()
                    .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
                && !label.starts_with('-')
                && !label.ends_with('-')
        })
}

/// The LimaVM of that name in whichever namespace holds it (names are unique across namespaces).
async fn find(client: &kube::Client, name: &str) -> anyhow::Result<LimaVM> {
    let all: Api<LimaVM> = Api::all(client.clone());
    let list = all
        .list(&ListParams::default().fields(&format!("metadata.name={name}")))
        .await?;
    list.items
        .into_iter()
        .find(|v| v.name_any() == name)
        .ok_or_else(|| anyhow::anyhow!("LimaVM {name:?} not found in any namespace"))
}

fn api_of(client: &kube::Client, vm: &LimaVM) -> Api<LimaVM> {
    Api::namespaced(client.clone(), &vm.namespace().unwrap_or_default())
}

fn running_is(vm: &LimaVM, status: &str) -> bool {
    let s = serde_json::to_value(&vm.status).unwrap_or_default();
    condition(&s, "Running").is_some_and(|c| c["status"] == status)
}

async fn wait_running(
    api: Api<LimaVM>,
    name: &str,
    want: bool,
    timeout: Duration,
) -> anyhow::Result<()> {
    let status = if want { "True" } else { "False" };
    until(
        api,
        name,
        timeout,
        &format!("LimaVM {name:?} Running={status}"),
        |o| match o {
            Some(vm) => Ok(running_is(vm, status)),
            None => Err(format!("LimaVM {name:?} was deleted while waiting")),
        },
    )
    .await?;
    Ok(())
}

async fn create(client: &kube::Client, a: CreateArgs) -> anyhow::Result<i32> {
    let ns = &a.namespace;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let vms: Api<LimaVM> = Api::namespaced(client.clone(), ns);
    let mut pp = PostParams::default();
    if a.dry_run {
        pp.dry_run = true;
    }
    // A ConfigMap name, else a file whose content becomes ConfigMap NAME.
    let (cm_name, from_file) = if is_dns1123_subdomain(&a.template) {
        (a.template.clone(), false)
    } else {
        let text = std::fs::read_to_string(&a.template)
            .map_err(|e| anyhow::anyhow!("failed to read template file {:?}: {e}", a.template))?;
        if cms.get_opt(&a.name).await?.is_some() {
            anyhow::bail!(
                "ConfigMap {:?} already exists in namespace {ns:?}; choose another LimaVM name or create from the ConfigMap",
                a.name
            );
        }
        let cm: ConfigMap = serde_json::from_value(json!({
            "apiVersion": "v1", "kind": "ConfigMap",
            "metadata": {"name": a.name, "namespace": ns},
            "data": {"template": text},
        }))?;
        cms.create(&pp, &cm).await.map_err(classify)?;
        (a.name.clone(), true)
    };
    if a.dry_run && from_file {
        // The defaulter copies the template from the ConfigMap, which a dry run did not create:
        // the ConfigMap was validated, the LimaVM cannot be.
        tracing::info!(
            "ConfigMap {cm_name:?} validated (dry run); LimaVM {:?} not checked",
            a.name
        );
        return Ok(0);
    }
    let mut vm = LimaVM::new(
        &a.name,
        LimaVMSpec {
            template_ref: TemplateRef {
                name: cm_name.clone(),
                namespace: None,
            },
            running: a.start,
        },
    );
    vm.metadata.namespace = Some(ns.clone());
    let created = match vms.create(&pp, &vm).await {
        Ok(v) => v,
        Err(e) => {
            if from_file {
                tracing::warn!("Cleaning up created ConfigMap {cm_name:?}");
                if let Err(d) = cms.delete(&cm_name, &DeleteParams::default()).await {
                    tracing::warn!(error = %d, "could not delete ConfigMap {cm_name:?}");
                }
            }
            return Err(classify(e));
        }
    };
    if a.dry_run {
        tracing::info!("LimaVM {:?} validated (dry run)", a.name);
        return Ok(0);
    }
    if from_file {
        // The LimaVM controls the ConfigMap made for it, so deleting the VM removes it.
        let owner = json!({
            "apiVersion": LimaVM::api_version(&()), "kind": LimaVM::kind(&()),
            "name": a.name, "uid": created.uid().unwrap_or_default(),
            "controller": true, "blockOwnerDeletion": true,
        });
        cms.patch(
            &cm_name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"ownerReferences": [owner]}})),
        )
        .await
        .map_err(classify)?;
    }
    tracing::info!(
        "LimaVM {:?} created in namespace {ns:?} with template ConfigMap {cm_name:?}",
        a.name
    );
    if a.start && a.wait.wait {
        wait_running(vms, &a.name, true, a.wait.timeout).await?;
    }
    Ok(0)
}

async fn set_running(client: &kube::Client, a: NameWait, running: bool) -> anyhow::Result<i32> {
    let vm = find(client, &a.name).await?;
    let api = api_of(client, &vm);
    api.patch(
        &a.name,
        &PatchParams::default(),
        &Patch::Merge(json!({"spec": {"running": running}})),
    )
    .await
    .map_err(classify)?;
    tracing::info!(
        "LimaVM {:?} {}",
        a.name,
        if running { "started" } else { "stopped" }
    );
    if a.wait.wait {
        wait_running(api, &a.name, running, a.wait.timeout).await?;
    }
    Ok(0)
}

async fn restart(client: &kube::Client, a: NameWait) -> anyhow::Result<i32> {
    let vm = find(client, &a.name).await?;
    let api = api_of(client, &vm);
    let before = vm.status.as_ref().map_or(0, |s| s.restart_count);
    let now = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    api.patch(
        &a.name,
        &PatchParams::default(),
        &Patch::Merge(json!({
            "metadata": {"annotations": {names::RESTART_REQUESTED_ANNOTATION: now}},
            "spec": {"running": true},
        })),
    )
    .await
    .map_err(classify)?;
    tracing::info!("LimaVM {:?} restart requested", a.name);
    if a.wait.wait {
        until(
            api,
            &a.name,
            a.wait.timeout,
            &format!("LimaVM {:?} to restart", a.name),
            |o| match o {
                Some(vm) => Ok(vm.status.as_ref().map_or(0, |s| s.restart_count) > before),
                None => Err(format!("LimaVM {:?} was deleted while waiting", a.name)),
            },
        )
        .await?;
    }
    Ok(0)
}

async fn delete(client: &kube::Client, a: NameWait) -> anyhow::Result<i32> {
    let vm = find(client, &a.name).await?;
    let api = api_of(client, &vm);
    api.delete(&a.name, &DeleteParams::default())
        .await
        .map_err(classify)?;
    tracing::info!(
        "LimaVM {:?} deleted from namespace {:?}",
        a.name,
        vm.namespace().unwrap_or_default()
    );
    if a.wait.wait {
        until(
            api,
            &a.name,
            a.wait.timeout,
            &format!("LimaVM {:?} to be deleted", a.name),
            |o| Ok(o.is_none()),
        )
        .await?;
    }
    Ok(0)
}

/// `limactl list --json NAME` → the instance's status (`Running`, `Stopped`, `Broken`).
async fn instance_status(inst: &Instance, name: &str) -> String {
    let out = tokio::process::Command::new(limactl())
        .args(["--tty=false", "list", "--json", name])
        .env("LIMA_HOME", lima_home(inst))
        .output()
        .await;
    out.ok()
        .and_then(|o| {
            String::from_utf8_lossy(&o.stdout)
                .lines()
                .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
                .find(|v| v["name"] == name)
                .and_then(|v| v["status"].as_str().map(str::to_string))
        })
        .unwrap_or_else(|| "NotCreated".into())
}

async fn shell(inst: &Instance, client: &kube::Client, a: ShellArgs) -> anyhow::Result<i32> {
    find(client, &a.name).await?;
    let status = instance_status(inst, &a.name).await;
    if status != "Running" {
        anyhow::bail!(
            "instance {:?} is not running (status: {status}), use 'rdd lima start {}' first",
            a.name,
            a.name
        );
    }
    let mut args = vec!["--tty=false".to_string(), "shell".into()];
    if let Some(s) = a.shell {
        args.extend(["--shell".into(), s]);
    }
    if let Some(w) = a.workdir {
        args.extend(["--workdir".into(), w]);
    }
    args.push(a.name);
    args.extend(a.command);
    let status = std::process::Command::new(limactl())
        .args(&args)
        .env("LIMA_HOME", lima_home(inst))
        .status()
        .with_context(|| format!("running {}", limactl()))?;
    Ok(status.code().unwrap_or(1))
}

fn editor() -> String {
    ["KUBE_EDITOR", "EDITOR", "VISUAL"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .find(|v| !v.trim().is_empty())
        .unwrap_or_else(|| "vi".into())
}

async fn edit(client: &kube::Client, name: &str) -> anyhow::Result<i32> {
    let vm = find(client, name).await?;
    let ns = vm.namespace().unwrap_or_default();
    let cm_name = vm
        .status
        .as_ref()
        .and_then(|s| s.template_config_map.clone())
        .ok_or_else(|| anyhow::anyhow!("LimaVM {name:?} has no template ConfigMap yet"))?;
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), &ns);
    let cm = cms.get(&cm_name).await?;
    let before = cm
        .data
        .as_ref()
        .and_then(|d| d.get("template"))
        .cloned()
        .unwrap_or_default();
    let dir = tempdir()?;
    let file = dir.join(format!("{name}.yaml"));
    std::fs::write(&file, &before)?;
    // Like kubectl edit: the editor variable may carry arguments.
    let status = std::process::Command::new("sh")
        .arg("-c")
        .arg(format!("{} \"$1\"", editor()))
        .arg("sh")
        .arg(&file)
        .status()
        .context("running the editor")?;
    let after = std::fs::read_to_string(&file);
    let _ = std::fs::remove_dir_all(&dir);
    if !status.success() {
        anyhow::bail!("the editor exited with {status}; template not changed");
    }
    let after = after?;
    if after.trim().is_empty() {
        anyhow::bail!("template data was cleared, aborting edit");
    }
    if after == before {
        tracing::info!("No changes made to template, skipping update");
        return Ok(0);
    }
    let data: BTreeMap<&str, &str> = BTreeMap::from([("template", after.as_str())]);
    cms.patch(
        &cm_name,
        &PatchParams::default(),
        &Patch::Merge(json!({"data": data})),
    )
    .await
    .map_err(classify)?;
    tracing::info!("Template ConfigMap {cm_name:?} updated successfully");
    Ok(0)
}

fn tempdir() -> anyhow::Result<PathBuf> {
    use std::os::unix::fs::DirBuilderExt;
    let base = std::env::temp_dir();
    for n in 0..100u32 {
        let p = base.join(format!("rdd-edit-{}-{n}", std::process::id()));
        match std::fs::DirBuilder::new().mode(0o700).create(&p) {
            Ok(()) => return Ok(p),
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(e) => return Err(e.into()),
        }
    }
    anyhow::bail!("could not create a temporary directory")
}

#[cfg(test)]
mod tests {
    use super::is_dns1123_subdomain;

    #[test]
    fn template_argument_kinds() {
        assert!(is_dns1123_subdomain("test-template"));
        assert!(is_dns1123_subdomain("a.b-c"));
        assert!(!is_dns1123_subdomain("/tmp/t.yaml"));
        assert!(!is_dns1123_subdomain("Template"));
        assert!(!is_dns1123_subdomain("-x"));
        assert!(!is_dns1123_subdomain(""));
    }
}
