//! The LimaVM state machine (controllers.md §3). One mutation per pass; every status write is
//! a merge patch of the status subresource (preparation can take minutes, and the App
//! controller writes `spec.running` meanwhile). The runner wakes on every LimaVM change
//! (status included), on the template copy ConfigMaps it controls, and on host-agent phase
//! changes, so "end the pass" after a write means "the write's event starts the next pass".
//!
//! Top level (§3.2), first matching row wins:
//!
//! | observed                                             | action                                        |
//! |------------------------------------------------------|-----------------------------------------------|
//! | LimaVM gone                                          | nothing                                       |
//! | deletionTimestamp                                    | §3.8: stop, delete instance, cleanup, unfinalize |
//! | no `Created`                                         | `Created=Unknown/Pending`                     |
//! | `.preparing` sentinel                                | Created → drop it; else remove the directory; requeue 1 s |
//! | no `templateConfigMap`, instance on disk             | leftover: force stop, delete                  |
//! | template copy not controlled by this LimaVM          | set the controller reference                  |
//! | no `templateConfigMap`                               | record `<name>-template`                      |
//! | `Created=True`, restart annotation                   | §3.4 (restartNeeded, then drop annotation)    |
//! | `Created=True`, copy rv ≠ observed                   | §3.5 (write lima.yaml, restartNeeded or observed rv) |
//! | `Created=True`                                       | §3.6 running state (table at [`running`])     |
//! | instance on disk                                     | record rv, `Created=True` ("exists")          |
//! | template empty                                       | `Created=False/CreateFailed`, error           |
//! | otherwise                                            | create, sentinel, prepare the image ([`crate::prepare`]), `Created=True`, drop sentinel; a failed preparation deletes the instance, `Created=False/CreateFailed` |

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, Patch, PatchParams};
use kube::runtime::controller::Action;
use kube::{Client, Resource, ResourceExt};
use rdd_api::limavm::{LimaVM, LimaVMStatus};
use rdd_api::names;
use rdd_kit::conditions::{self, Desired};
use serde_json::{Value, json};

use crate::Error;
use crate::agent::{Agents, Phase};
use crate::limactl::Limactl;

pub struct Ctx {
    pub client: Client,
    pub limactl: Limactl,
    pub agents: Arc<Agents>,
    pub recorder: rdd_kit::events::Recorder,
    pub fetcher: crate::prepare::Fetcher,
    /// How long `start` waits for `ha.pid` (covers disk preparation, lima.md §12.1).
    pub pid_wait: Duration,
}

const RUNNING: &str = "Running";
const CREATED: &str = "Created";

fn is_not_found(e: &kube::Error) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == 404)
}

/// A status write: conditions to set plus other status fields, as one merge patch; emits a
/// `ConditionChanged` event per changed condition. Returns whether anything was written.
struct StatusWrite<'a> {
    vm: &'a LimaVM,
    conditions: Vec<(&'static str, &'static str, &'static str, String)>,
    fields: serde_json::Map<String, Value>,
}

impl<'a> StatusWrite<'a> {
    fn new(vm: &'a LimaVM) -> Self {
        StatusWrite {
            vm,
            conditions: vec![],
            fields: Default::default(),
        }
    }
    fn cond(
        mut self,
        t: &'static str,
        s: &'static str,
        r: &'static str,
        m: impl Into<String>,
    ) -> Self {
        self.conditions.push((t, s, r, m.into()));
        self
    }
    fn field(mut self, k: &str, v: Value) -> Self {
        self.fields.insert(k.to_string(), v);
        self
    }
    async fn send(self, ctx: &Ctx) -> Result<bool, Error> {
        let mut list = self
            .vm
            .status
            .as_ref()
            .map(|s| s.conditions.clone())
            .unwrap_or_default();
        let now = conditions::now();
        let mut changed_types = vec![];
        for (t, s, r, m) in &self.conditions {
            let d = Desired {
                type_: t,
                status: s,
                reason: r,
                message: m,
                observed_generation: None,
            };
            if conditions::set(&mut list, &d, &now) {
                changed_types.push((*t, m.clone()));
            }
        }
        let mut status = self.fields;
        if !changed_types.is_empty() {
            status.insert("conditions".into(), serde_json::to_value(&list)?);
        }
        if status.is_empty() {
            return Ok(false);
        }
        let api: Api<LimaVM> =
            Api::namespaced(ctx.client.clone(), &self.vm.namespace().unwrap_or_default());
        match api
            .patch_status(
                &self.vm.name_any(),
                &PatchParams::default(),
                &Patch::Merge(json!({ "status": status })),
            )
            .await
        {
            Ok(_) => {}
            Err(e) if is_not_found(&e) => return Ok(false),
            Err(e) => return Err(e.into()),
        }
        for (t, m) in changed_types {
            ctx.recorder
                .publish(self.vm, false, "ConditionChanged", t, &m)
                .await;
        }
        Ok(true)
    }
}

fn cond<'a>(s: &'a LimaVMStatus, t: &str) -> Option<&'a conditions::Condition> {
    conditions::find(&s.conditions, t)
}

fn is(c: Option<&conditions::Condition>, status: &str, reason: &str) -> bool {
    c.is_some_and(|c| c.status == status && c.reason == reason)
}

fn controlled_by(cm: &ConfigMap, uid: &str) -> bool {
    cm.owner_references()
        .iter()
        .any(|o| o.uid == uid && o.controller == Some(true))
}

pub async fn reconcile(obj: Arc<LimaVM>, ctx: Arc<Ctx>) -> Result<Action, Error> {
    let ns = obj.namespace().unwrap_or_default();
    let name = obj.name_any();
    let api: Api<LimaVM> = Api::namespaced(ctx.client.clone(), &ns);
    // Uncached: the pass must see its own writes of the previous pass.
    let Some(vm) = api.get_opt(&name).await? else {
        return Ok(Action::await_change());
    };
    if vm.meta().deletion_timestamp.is_some() {
        return delete(&vm, &ctx).await;
    }
    let status = vm.status.clone().unwrap_or_default();
    if cond(&status, CREATED).is_none() {
        StatusWrite::new(&vm)
            .cond(CREATED, "Unknown", "Pending", "Reconciliation in progress")
            .send(&ctx)
            .await?;
        return Ok(Action::await_change());
    }
    let created = is(cond(&status, CREATED), "True", "Created");
    let dir = ctx.limactl.dir(&name);
    let sentinel = dir.join(".preparing");
    if sentinel.exists() {
        if created {
            std::fs::remove_file(&sentinel)?;
        } else {
            tracing::info!(dir = %dir.display(), "removing an interrupted preparation");
            std::fs::remove_dir_all(&dir)?;
        }
        return Ok(Action::requeue(Duration::from_secs(1)));
    }
    if status.template_config_map.is_none() && dir.join("lima.yaml").exists() {
        tracing::info!(dir = %dir.display(), "removing a leftover instance of an earlier deletion");
        ctx.agents.forget(&name);
        ctx.limactl.stop_force(&name).await?;
        ctx.limactl.delete(&name).await?;
    }
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    let copy_name = names::template_copy_name(&name);
    let cm = cms.get(&copy_name).await?;
    let uid = vm.uid().unwrap_or_default();
    if !controlled_by(&cm, &uid) {
        let owner = vm
            .controller_owner_ref(&())
            .ok_or_else(|| Error::Invalid("LimaVM without a UID".into()))?;
        let mut refs: Vec<_> = cm
            .owner_references()
            .iter()
            .filter(|o| o.controller != Some(true))
            .cloned()
            .collect();
        refs.push(owner);
        cms.patch(
            &copy_name,
            &PatchParams::default(),
            &Patch::Merge(json!({"metadata": {"ownerReferences": refs}})),
        )
        .await?;
        return Ok(Action::requeue(Duration::ZERO));
    }
    if status.template_config_map.is_none() {
        StatusWrite::new(&vm)
            .field("templateConfigMap", json!(copy_name))
            .send(&ctx)
            .await?;
        return Ok(Action::await_change());
    }
    let cm_rv = cm.resource_version().unwrap_or_default();
    let template = cm
        .data
        .as_ref()
        .and_then(|d| d.get("template"))
        .cloned()
        .unwrap_or_default();
    if created {
        if vm
            .annotations()
            .contains_key(names::RESTART_REQUESTED_ANNOTATION)
        {
            return restart_annotation(&vm, &status, &ctx).await;
        }
        if status.observed_template_resource_version.as_deref() != Some(cm_rv.as_str())
            && let Some(action) = template_change(&vm, &status, &template, &cm_rv, &ctx).await?
        {
            return Ok(action);
        }
        return running(&vm, &status, &ctx).await;
    }
    if dir.join("lima.yaml").exists() {
        StatusWrite::new(&vm)
            .cond(CREATED, "True", "Created", "Lima instance exists")
            .field("observedTemplateResourceVersion", json!(cm_rv))
            .send(&ctx)
            .await?;
        return Ok(Action::await_change());
    }
    if template.is_empty() {
        let msg = "template ConfigMap missing template data";
        StatusWrite::new(&vm)
            .cond(CREATED, "False", "CreateFailed", msg)
            .send(&ctx)
            .await?;
        return Err(Error::Invalid(msg.into()));
    }
    if let Err(e) = ctx.limactl.create(&name, &template).await {
        let msg = e.to_string();
        if msg.contains("already exists") {
            // A directory without valid Lima metadata: remove it and try again.
            let wait = match std::fs::remove_dir_all(&dir) {
                Ok(()) => 1,
                Err(_) => 2,
            };
            return Ok(Action::requeue(Duration::from_secs(wait)));
        }
        StatusWrite::new(&vm)
            .cond(CREATED, "False", "CreateFailed", msg)
            .send(&ctx)
            .await?;
        return Err(e);
    }
    if let Err(e) = std::fs::write(&sentinel, b"") {
        let _ = ctx.limactl.delete(&name).await;
        return Err(e.into());
    }
    // Step 14: the image, downloaded and decompressed before `Created=True` (lima.md §12.1
    // "prepare"); disks are left to `limactl start`, which skips downloading when `image`
    // exists. A failure deletes the instance, so the next pass starts over.
    match ctx.fetcher.prepare(&template, &dir).await {
        Ok(what) => tracing::info!(instance = %name, "{what}"),
        Err(e) => {
            let msg = e.to_string();
            if let Err(del) = ctx.limactl.delete(&name).await {
                tracing::warn!(instance = %name, error = %del, "deleting the instance after a failed preparation");
            }
            StatusWrite::new(&vm)
                .cond(CREATED, "False", "CreateFailed", msg)
                .send(&ctx)
                .await?;
            return Err(e.into());
        }
    }
    StatusWrite::new(&vm)
        .cond(
            CREATED,
            "True",
            "Created",
            "Lima instance created successfully",
        )
        .field("observedTemplateResourceVersion", json!(cm_rv))
        .send(&ctx)
        .await?;
    std::fs::remove_file(&sentinel)?;
    Ok(Action::await_change())
}

/// §3.4: first the durable `restartNeeded=true`, then (next pass) the annotation goes.
async fn restart_annotation(
    vm: &LimaVM,
    status: &LimaVMStatus,
    ctx: &Ctx,
) -> Result<Action, Error> {
    if !status.restart_needed {
        StatusWrite::new(vm)
            .field("restartNeeded", json!(true))
            .send(ctx)
            .await?;
        return Ok(Action::await_change());
    }
    let api: Api<LimaVM> = Api::namespaced(ctx.client.clone(), &vm.namespace().unwrap_or_default());
    api.patch(
        &vm.name_any(),
        &PatchParams::default(),
        &Patch::Merge(
            json!({"metadata": {"annotations": {names::RESTART_REQUESTED_ANNOTATION: null}}}),
        ),
    )
    .await?;
    Ok(Action::await_change())
}

/// What §3.5 asks for when the template copy's resourceVersion is not the observed one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TemplateAction {
    /// lima.yaml already matches; a restart is pending: continue to §3.6 (it applies it).
    AwaitRestart,
    /// lima.yaml already matches: record the copy's resourceVersion.
    Record,
    /// Running/Starting instance: `restartNeeded=true`, then write lima.yaml (observed kept).
    MarkRestartAndWrite,
    /// A restart is already pending: write lima.yaml (observed kept).
    Write,
    /// Stopped instance: write lima.yaml and record the resourceVersion (no start).
    WriteAndRecord,
}

/// §3.5 as a table (pure):
///
/// | lima.yaml vs copy | phase            | restartNeeded | action                                  |
/// |-------------------|------------------|---------------|-----------------------------------------|
/// | equal             | any              | true          | wait for the restart (continue)         |
/// | equal             | any              | false         | record the copy's resourceVersion       |
/// | different         | Running/Starting | false         | restartNeeded=true, write lima.yaml      |
/// | different         | any              | true          | write lima.yaml (observed unchanged)    |
/// | different         | stopped          | false         | write lima.yaml, record resourceVersion |
///
/// So for a running instance the observed version advances only after the stop for the
/// restart (the file then already matches), and a stopped instance is not started.
pub fn decide_template(equal: bool, live: bool, restart_needed: bool) -> TemplateAction {
    match (equal, live, restart_needed) {
        (true, _, true) => TemplateAction::AwaitRestart,
        (true, _, false) => TemplateAction::Record,
        (false, true, false) => TemplateAction::MarkRestartAndWrite,
        (false, _, true) => TemplateAction::Write,
        (false, false, false) => TemplateAction::WriteAndRecord,
    }
}

/// §3.5: the template copy changed. Returns Some(action) when the pass ends here.
async fn template_change(
    vm: &LimaVM,
    status: &LimaVMStatus,
    template: &str,
    cm_rv: &str,
    ctx: &Ctx,
) -> Result<Option<Action>, Error> {
    let name = vm.name_any();
    let lima_yaml = ctx.limactl.dir(&name).join("lima.yaml");
    let equal = std::fs::read(&lima_yaml)? == template.as_bytes();
    let live = matches!(
        ctx.agents.phase(&name),
        Some(Phase::Running) | Some(Phase::Starting)
    );
    let action = decide_template(equal, live, status.restart_needed);
    if action == TemplateAction::AwaitRestart {
        return Ok(None);
    }
    if action == TemplateAction::MarkRestartAndWrite {
        // First the durable restart request: if it fails nothing else changed.
        StatusWrite::new(vm)
            .field("restartNeeded", json!(true))
            .send(ctx)
            .await?;
    }
    if action != TemplateAction::Record {
        std::fs::write(&lima_yaml, template)?;
        tracing::info!(instance = %name, "wrote the new template to lima.yaml");
    }
    if matches!(
        action,
        TemplateAction::Record | TemplateAction::WriteAndRecord
    ) {
        StatusWrite::new(vm)
            .field("observedTemplateResourceVersion", json!(cm_rv))
            .send(ctx)
            .await?;
    }
    Ok(Some(Action::await_change()))
}

/// §3.6 running state. `phase` is the watcher's (None = Unknown, e.g. after a controller
/// restart).
///
/// | pre-step / phase | shouldRun | action |
/// |---|---|---|
/// | Unknown, `Running` not Unknown/Reconciling | true | `Running=Unknown/Reconciling` |
/// | restartNeeded, Running | – | graceful stop; `restartNeeded=false` + `Running=False/Stopped` ("Stopped for restart") |
/// | restartNeeded, Starting | – | wait for boot |
/// | restartNeeded, Stopped/Unknown | – | `restartNeeded=false` |
/// | Starting | true | `Running=False/Starting` |
/// | Running | true | `Running=True/Started` + restartCount+1 (once) |
/// | Stopped | true | crashed: after the backoff (G-4) force-stop leftovers and start |
/// | Running/Starting | false | stop (graceful first) |
/// | Stopped | false | `Running=False/Stopped` |
/// | Unknown: inspect Running/Broken | – | orphan: kill (interrupt first), requeue 1 s |
/// | Unknown: otherwise | true / false | start / `Running=False/Stopped` |
/// What §3.6 asks for, decided from the observed state alone (pure; the table above).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunAction {
    /// `Running=Unknown/Reconciling`.
    MarkReconciling,
    /// Graceful stop; `restartNeeded=false` + `Running=False/Stopped` ("Stopped for restart").
    StopForRestart,
    /// Nothing now: the watcher wakes us when boot completes.
    WaitForBoot,
    /// `restartNeeded=false`.
    ClearRestart,
    /// Ensure `Running=False/Starting`.
    MarkStarting,
    /// `Running=True/Started` + restartCount+1.
    MarkStarted,
    /// Nothing to write.
    Nothing,
    /// The agent died while it should run: backoff, force-stop leftovers, start.
    RestartAfterCrash,
    /// Stop (graceful first) and verify.
    Stop,
    /// Forget the watcher; ensure `Running=False/Stopped`.
    MarkStopped,
    /// No watcher: inspect, then orphan kill / start / `Running=False/Stopped`.
    Inspect,
}

pub fn decide_running(
    phase: Option<Phase>,
    should_run: bool,
    restart_needed: bool,
    running: Option<&conditions::Condition>,
) -> RunAction {
    use RunAction::*;
    if should_run && phase.is_none() && !is(running, "Unknown", "Reconciling") {
        return MarkReconciling;
    }
    if restart_needed {
        return match phase {
            Some(Phase::Running) => StopForRestart,
            Some(Phase::Starting) => WaitForBoot,
            Some(Phase::Stopped) | None => ClearRestart,
        };
    }
    match (phase, should_run) {
        (Some(Phase::Starting), true) => MarkStarting,
        (Some(Phase::Running), true) if is(running, "True", "Started") => Nothing,
        (Some(Phase::Running), true) => MarkStarted,
        (Some(Phase::Stopped), true) => RestartAfterCrash,
        (Some(Phase::Running) | Some(Phase::Starting), false) => Stop,
        (Some(Phase::Stopped), false) => MarkStopped,
        (None, _) => Inspect,
    }
}

async fn running(vm: &LimaVM, status: &LimaVMStatus, ctx: &Ctx) -> Result<Action, Error> {
    let name = vm.name_any();
    let should_run = vm.spec.running;
    let phase = ctx.agents.phase(&name);
    match decide_running(
        phase,
        should_run,
        status.restart_needed,
        cond(status, RUNNING),
    ) {
        RunAction::MarkReconciling => {
            StatusWrite::new(vm)
                .cond(
                    RUNNING,
                    "Unknown",
                    "Reconciling",
                    "Verifying instance state after controller restart",
                )
                .send(ctx)
                .await?;
        }
        RunAction::StopForRestart => {
            ctx.agents.stop(&name).await?;
            StatusWrite::new(vm)
                .field("restartNeeded", json!(false))
                .cond(RUNNING, "False", "Stopped", "Stopped for restart")
                .send(ctx)
                .await?;
        }
        RunAction::WaitForBoot | RunAction::Nothing => {}
        RunAction::ClearRestart => {
            StatusWrite::new(vm)
                .field("restartNeeded", json!(false))
                .send(ctx)
                .await?;
        }
        RunAction::MarkStarting => {
            StatusWrite::new(vm)
                .cond(RUNNING, "False", "Starting", "Lima instance is starting")
                .send(ctx)
                .await?;
        }
        RunAction::MarkStarted => {
            StatusWrite::new(vm)
                .cond(RUNNING, "True", "Started", "Lima instance is running")
                .field("restartCount", json!(status.restart_count + 1))
                .send(ctx)
                .await?;
        }
        RunAction::RestartAfterCrash => {
            let delay = ctx.agents.restart_delay(&name);
            if !delay.is_zero() {
                tracing::info!(instance = %name, ?delay, "host agent stopped; restarting after backoff");
                return Ok(Action::requeue(delay));
            }
            ctx.agents.forget(&name);
            if let Some(i) = ctx.limactl.inspect(&name).await?
                && matches!(i.status.as_str(), "Running" | "Broken")
            {
                ctx.limactl.stop_force(&name).await?;
            }
            return start(vm, ctx, true).await;
        }
        RunAction::Stop => return stop(vm, ctx).await,
        RunAction::MarkStopped => {
            ctx.agents.forget(&name);
            StatusWrite::new(vm)
                .cond(RUNNING, "False", "Stopped", "Lima instance is stopped")
                .send(ctx)
                .await?;
        }
        RunAction::Inspect => {
            let Some(i) = ctx.limactl.inspect(&name).await? else {
                return Err(Error::Invalid("instance not found".into()));
            };
            if matches!(i.status.as_str(), "Running" | "Broken") {
                tracing::info!(instance = %name, pid = i.host_agent_pid, driver = i.driver_pid, errors = ?i.errors, "killing an orphaned host agent");
                ctx.agents.kill_orphan(&name, i.host_agent_pid).await?;
                return Ok(Action::requeue(Duration::from_secs(1)));
            }
            if should_run {
                return start(vm, ctx, false).await;
            }
            StatusWrite::new(vm)
                .cond(RUNNING, "False", "Stopped", "Lima instance is stopped")
                .send(ctx)
                .await?;
        }
    }
    Ok(Action::await_change())
}

/// §3.7 start: `Running=False/Starting` before anything slow, then the host agent.
async fn start(vm: &LimaVM, ctx: &Ctx, after_crash: bool) -> Result<Action, Error> {
    let name = vm.name_any();
    let delay = ctx.agents.restart_delay(&name);
    if !delay.is_zero() {
        return Ok(Action::requeue(delay));
    }
    StatusWrite::new(vm)
        .cond(RUNNING, "False", "Starting", "Lima instance is starting")
        .send(ctx)
        .await?;
    let ns = vm.namespace().unwrap_or_default();
    match ctx
        .agents
        .start(&ns, &name, after_crash, ctx.pid_wait)
        .await
    {
        Ok(_) => Ok(Action::await_change()),
        Err(msg) => {
            // The status write above changed the object; refresh so this write is based on it.
            let fresh = Api::<LimaVM>::namespaced(ctx.client.clone(), &ns)
                .get(&name)
                .await?;
            StatusWrite::new(&fresh)
                .cond(RUNNING, "False", "StartFailed", msg.clone())
                .send(ctx)
                .await?;
            Err(Error::Limactl(msg))
        }
    }
}

/// §3.7 stop: graceful, then verify with inspect.
async fn stop(vm: &LimaVM, ctx: &Ctx) -> Result<Action, Error> {
    let name = vm.name_any();
    let stopped = ctx.agents.stop(&name).await;
    ctx.agents.reset_backoff(&name);
    let (reason, msg) = match (stopped, ctx.limactl.inspect(&name).await) {
        (Err(e), _) | (_, Err(e)) => ("StopFailed", e.to_string()),
        (_, Ok(Some(i))) if i.status == "Running" => (
            "StopFailed",
            "instance still running after stop attempt".to_string(),
        ),
        _ => ("Stopped", "Lima instance stopped successfully".to_string()),
    };
    StatusWrite::new(vm)
        .cond(
            RUNNING,
            "False",
            if reason == "Stopped" {
                "Stopped"
            } else {
                "StopFailed"
            },
            msg.clone(),
        )
        .send(ctx)
        .await?;
    if reason == "StopFailed" {
        return Err(Error::Limactl(msg));
    }
    Ok(Action::await_change())
}

/// §3.8 deletion: stop and delete the instance, remove what this LimaVM controls, then our
/// finalizer. `owned-by-App` is never touched here (the App controller's job).
async fn delete(vm: &LimaVM, ctx: &Ctx) -> Result<Action, Error> {
    let name = vm.name_any();
    let ns = vm.namespace().unwrap_or_default();
    if !vm
        .finalizers()
        .iter()
        .any(|f| f == names::CLEANUP_FINALIZER)
    {
        return Ok(Action::await_change());
    }
    ctx.agents.stop(&name).await.unwrap_or_else(|e| {
        tracing::warn!(instance = %name, error = %e, "stopping the host agent for deletion");
    });
    match ctx.limactl.inspect(&name).await {
        Ok(Some(i)) => {
            if i.status == "Running" {
                ctx.limactl.stop_force(&name).await?;
            }
        }
        Ok(None) => {}
        Err(e) => tracing::warn!(instance = %name, error = %e, "inspect before deletion"),
    }
    if ctx.limactl.dir(&name).exists() {
        keep_logs(&ctx.limactl.dir(&name), &name);
        ctx.limactl.delete(&name).await?;
    }
    cleanup_owned(vm, ctx).await?;
    let api: Api<LimaVM> = Api::namespaced(ctx.client.clone(), &ns);
    rdd_kit::finalizer::remove(&api, &name, names::CLEANUP_FINALIZER).await?;
    Ok(Action::await_change())
}

/// With `RDD_KEEP_LOGS`, move the instance's logs to `<log dir>/<name>` (or `<name>.2`, …).
fn keep_logs(dir: &std::path::Path, name: &str) {
    if std::env::var_os("RDD_KEEP_LOGS").is_none() {
        return;
    }
    let Ok(inst) = rdd_process::instance::Instance::from_env() else {
        return;
    };
    let logs: Vec<_> = std::fs::read_dir(dir)
        .map(|d| {
            d.filter_map(Result::ok)
                .filter(|e| e.path().extension().is_some_and(|x| x == "log"))
                .collect()
        })
        .unwrap_or_default();
    if logs.is_empty() {
        return;
    }
    let base = inst.log_dir();
    let target = (1..=1000)
        .map(|i| {
            if i == 1 {
                base.join(name)
            } else {
                base.join(format!("{name}.{i}"))
            }
        })
        .find(|p| !p.exists());
    if let Some(t) = target
        && std::fs::create_dir_all(&t).is_ok()
    {
        for l in logs {
            let _ = std::fs::rename(l.path(), t.join(l.file_name()));
        }
    }
}

/// §0.3 ([`rdd_kit::owned`]): everything in the namespace this LimaVM owns, of every kind this
/// identity may list; then the template copy by name, in case it was never adopted (the LimaVM
/// was deleted before the reconciler set the controller reference).
async fn cleanup_owned(vm: &LimaVM, ctx: &Ctx) -> Result<(), Error> {
    let ns = vm.namespace().unwrap_or_default();
    let uid = vm.uid().unwrap_or_default();
    let mut errors = vec![];
    match rdd_kit::owned::cleanup(&ctx.client, &ns, &uid).await {
        Ok(n) => tracing::debug!(deleted = n, "owned objects deleted"),
        Err(e) => errors.push(e.to_string()),
    }
    let cms: Api<ConfigMap> = Api::namespaced(ctx.client.clone(), &ns);
    let copy = names::template_copy_name(&vm.name_any());
    if let Some(cm) = cms.get_opt(&copy).await?
        && let Err(e) = rdd_kit::owned::release(&cms, &cm).await
    {
        errors.push(format!("{copy}: {e}"));
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(Error::Cleanup(errors.join("; ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use RunAction::*;

    fn c(status: &str, reason: &str) -> conditions::Condition {
        conditions::Condition {
            type_: RUNNING.into(),
            status: status.into(),
            reason: reason.into(),
            ..Default::default()
        }
    }

    #[test]
    fn template_change_table() {
        use TemplateAction::*;
        assert_eq!(decide_template(true, true, true), AwaitRestart);
        assert_eq!(decide_template(true, false, false), Record);
        assert_eq!(decide_template(true, true, false), Record);
        assert_eq!(decide_template(false, true, false), MarkRestartAndWrite);
        assert_eq!(decide_template(false, true, true), Write);
        assert_eq!(decide_template(false, false, true), Write);
        assert_eq!(decide_template(false, false, false), WriteAndRecord);
    }

    #[test]
    fn running_state_table() {
        let started = c("True", "Started");
        let reconciling = c("Unknown", "Reconciling");
        let stopped = c("False", "Stopped");
        let r = Some(Phase::Running);
        let s = Some(Phase::Starting);
        let x = Some(Phase::Stopped);
        // Pre-step 1, guarded by shouldRun (a stopped VM does not oscillate).
        assert_eq!(
            decide_running(None, true, false, Some(&started)),
            MarkReconciling
        );
        assert_eq!(
            decide_running(None, true, false, Some(&reconciling)),
            Inspect
        );
        assert_eq!(decide_running(None, false, false, Some(&stopped)), Inspect);
        // Pre-step 2: restartNeeded.
        assert_eq!(
            decide_running(r, true, true, Some(&started)),
            StopForRestart
        );
        assert_eq!(decide_running(s, true, true, None), WaitForBoot);
        assert_eq!(decide_running(x, true, true, None), ClearRestart);
        assert_eq!(decide_running(None, false, true, None), ClearRestart);
        // Watched states.
        assert_eq!(decide_running(s, true, false, None), MarkStarting);
        assert_eq!(
            decide_running(r, true, false, Some(&reconciling)),
            MarkStarted
        );
        assert_eq!(decide_running(r, true, false, Some(&started)), Nothing);
        assert_eq!(
            decide_running(x, true, false, Some(&started)),
            RestartAfterCrash
        );
        assert_eq!(decide_running(r, false, false, Some(&started)), Stop);
        assert_eq!(decide_running(s, false, false, None), Stop);
        assert_eq!(decide_running(x, false, false, Some(&started)), MarkStopped);
    }
}
