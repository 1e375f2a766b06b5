//! `rdd set PROPERTY=VALUE…`, `rdd start`, `rdd stop` (cli.md §5, §6): change the App singleton
//! from its live CRD schema, then wait for `Settled=True` with `observedGeneration` ≥ the
//! generation our own write produced — never for a stale condition (R-ENG-I3, S8).

use std::collections::BTreeMap;
use std::io::IsTerminal;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::Args;
use futures::StreamExt;
use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::api::{Api, DynamicObject, Patch, PatchParams, PostParams};
use kube::core::{ApiResource, GroupVersionKind};
use kube::runtime::watcher;
use serde_json::{Map, Value, json};

use crate::exit::{parse_duration, rejected, timed_out};
use crate::svc::control;
use rdd_process::instance::Instance;

pub const APP_CRD: &str = "apps.app.rancherdesktop.io";

#[derive(Args, Debug)]
pub struct WaitFlags {
    /// Wait until the App is settled (Settled=True for this change).
    #[arg(long, default_value = "true", action = clap::ArgAction::Set)]
    pub wait: bool,
    /// Deadline for the wait (Go duration; 0 = no deadline, like kubectl wait).
    #[arg(long, default_value = "5m", value_parser = parse_duration)]
    pub timeout: Duration,
}

#[derive(Args, Debug)]
pub struct SetArgs {
    /// Validate the change through the API server without applying it.
    #[arg(long)]
    pub dry_run: bool,
    #[command(flatten)]
    pub wait: WaitFlags,
    /// PROPERTY=VALUE pairs, e.g. running=true containerEngine.name=moby.
    #[arg(required = true, value_name = "PROPERTY=VALUE")]
    pub properties: Vec<String>,
}

/// Split and validate the arguments before any API call (cli.md §5.1 step 1).
pub fn split_args(args: &[String]) -> anyhow::Result<BTreeMap<String, String>> {
    let mut out = BTreeMap::new();
    for a in args {
        let Some((k, v)) = a.split_once('=') else {
            anyhow::bail!("invalid argument {a:?}: expected PROPERTY=VALUE format");
        };
        if k.is_empty() {
            anyhow::bail!("invalid argument {a:?}: property name must not be empty");
        }
        out.insert(k.to_string(), v.to_string());
    }
    Ok(out)
}

fn leaves(schema: &Value, prefix: &str, out: &mut Vec<String>) {
    match schema.get("properties").and_then(Value::as_object) {
        Some(props)
            if schema.get("type").and_then(Value::as_str) == Some("object")
                || !props.is_empty() =>
        {
            for (k, v) in props {
                let p = if prefix.is_empty() {
                    k.clone()
                } else {
                    format!("{prefix}.{k}")
                };
                leaves(v, &p, out);
            }
        }
        _ => out.push(prefix.to_string()),
    }
}

fn sorted_leaves(schema: &Value) -> String {
    let mut v = Vec::new();
    leaves(schema, "", &mut v);
    v.sort();
    v.join(", ")
}

/// Resolve a dotted path in the spec schema and coerce the value (cli.md §5.1 steps 4–5).
pub fn resolve(spec: &Value, path: &str, raw: &str) -> Result<Value, String> {
    let mut node = spec;
    let mut walked: Vec<&str> = Vec::new();
    for seg in path.split('.') {
        let props = node.get("properties").and_then(Value::as_object);
        let Some(props) = props else {
            return Err(format!(
                "{path}: {:?} is not an object and has no sub-properties",
                walked.join(".")
            ));
        };
        let Some(next) = props.get(seg) else {
            return Err(if walked.is_empty() {
                format!(
                    "{path}: unknown property {seg:?}; valid properties: {}",
                    sorted_leaves(node)
                )
            } else {
                format!(
                    "{path}: unknown property {seg:?} under {:?}; valid properties: {}",
                    walked.join("."),
                    sorted_leaves(node)
                )
            });
        };
        walked.push(seg);
        node = next;
    }
    if let Some(props) = node.get("properties").and_then(Value::as_object) {
        let mut keys: Vec<&String> = props.keys().collect();
        keys.sort();
        return Err(match keys.first() {
            Some(first) => {
                format!("{path}: {path:?} is an object; set its fields, e.g. \"{path}.{first}\"")
            }
            None => format!("{path}: {path:?} is an object, not a settable property"),
        });
    }
    let invalid = |why: String| format!("invalid value {raw:?} for {path:?}: {why}");
    if let Some(e) = node.get("enum").and_then(Value::as_array) {
        let vals: Vec<&str> = e.iter().filter_map(Value::as_str).collect();
        if !vals.contains(&raw) {
            return Err(invalid(format!("valid values: {}", vals.join(", "))));
        }
        return Ok(json!(raw));
    }
    match node.get("type").and_then(Value::as_str).unwrap_or("") {
        "boolean" => match raw {
            "1" | "t" | "T" | "true" | "TRUE" | "True" => Ok(json!(true)),
            "0" | "f" | "F" | "false" | "FALSE" | "False" => Ok(json!(false)),
            _ => Err(invalid(
                "expected boolean; use \"true\" or \"false\"".into(),
            )),
        },
        "integer" => raw
            .parse::<i64>()
            .map(|n| json!(n))
            .map_err(|_| invalid("expected integer".into())),
        "string" => Ok(json!(raw)),
        t => Err(invalid(format!("unsupported schema type {t:?}"))),
    }
}

fn insert(map: &mut Map<String, Value>, path: &str, v: Value) {
    match path.split_once('.') {
        None => {
            map.insert(path.to_string(), v);
        }
        Some((head, rest)) => {
            let e = map.entry(head.to_string()).or_insert_with(|| json!({}));
            if let Some(m) = e.as_object_mut() {
                insert(m, rest, v);
            }
        }
    }
}

/// Zero values for required fields the user did not give, in objects the user touched.
fn fill_required(schema: &Value, obj: &mut Map<String, Value>) {
    let props = schema.get("properties").and_then(Value::as_object);
    if let Some(req) = schema.get("required").and_then(Value::as_array) {
        for r in req.iter().filter_map(Value::as_str) {
            if obj.contains_key(r) {
                continue;
            }
            let Some(p) = props.and_then(|p| p.get(r)) else {
                continue;
            };
            let zero = if let Some(first) = p
                .get("enum")
                .and_then(Value::as_array)
                .and_then(|e| e.first())
            {
                first.clone()
            } else {
                match p.get("type").and_then(Value::as_str) {
                    Some("boolean") => json!(false),
                    Some("integer") => json!(0),
                    Some("object") => json!({}),
                    _ => json!(""),
                }
            };
            obj.insert(r.to_string(), zero);
        }
    }
    if let Some(props) = props {
        for (k, v) in obj.iter_mut() {
            if let (Some(child), Some(m)) = (props.get(k), v.as_object_mut()) {
                fill_required(child, m);
            }
        }
    }
}

pub fn app_resource() -> ApiResource {
    ApiResource::from_gvk_with_plural(
        &GroupVersionKind::gvk("app.rancherdesktop.io", "v1alpha1", "App"),
        "apps",
    )
}

pub fn classify(e: kube::Error) -> anyhow::Error {
    match &e {
        kube::Error::Api(s) if matches!(s.code, 400 | 403 | 422) => rejected(s.message.clone()),
        _ => anyhow::Error::new(e),
    }
}

async fn spec_schema(client: &kube::Client) -> anyhow::Result<Value> {
    let crds: Api<CustomResourceDefinition> = Api::all(client.clone());
    let crd = crds.get_opt(APP_CRD).await?.ok_or_else(|| {
        anyhow::anyhow!("app CRD is not installed; make sure the control plane is running with the app controller enabled")
    })?;
    let v = serde_json::to_value(&crd.spec)?;
    let versions = v["versions"].as_array().cloned().unwrap_or_default();
    let storage = versions
        .iter()
        .find(|x| x["storage"] == json!(true))
        .context("app CRD has no storage version")?;
    let mut spec = storage["schema"]["openAPIV3Schema"]["properties"]["spec"].clone();
    if let Some(p) = spec.get_mut("properties").and_then(Value::as_object_mut) {
        p.remove("namespace");
    }
    Ok(spec)
}

/// Create or patch the App; returns its post-write generation.
pub async fn write(
    client: &kube::Client,
    props: &BTreeMap<String, String>,
    dry_run: bool,
) -> anyhow::Result<i64> {
    let schema = spec_schema(client).await?;
    let mut spec = Map::new();
    for (k, raw) in props {
        let v = resolve(&schema, k, raw).map_err(anyhow::Error::msg)?;
        insert(&mut spec, k, v);
    }
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &app_resource());
    if api.get_opt("app").await?.is_none() {
        let mut create_spec = if dry_run { Map::new() } else { spec.clone() };
        fill_required(&schema, &mut create_spec);
        let obj: DynamicObject = serde_json::from_value(json!({
            "apiVersion": "app.rancherdesktop.io/v1alpha1",
            "kind": "App",
            "metadata": {"name": "app"},
            "spec": create_spec,
        }))?;
        match api.create(&PostParams::default(), &obj).await {
            Ok(o) if !dry_run => {
                tracing::info!("App created");
                return Ok(o.metadata.generation.unwrap_or(1));
            }
            Ok(_) => {}
            Err(kube::Error::Api(s)) if s.code == 409 => {}
            Err(e) => return Err(classify(e)),
        }
    }
    let mut pp = PatchParams::default();
    if dry_run {
        pp = pp.dry_run();
    }
    let o = api
        .patch("app", &pp, &Patch::Merge(json!({"spec": spec})))
        .await
        .map_err(classify)?;
    tracing::info!(
        "{}",
        if dry_run {
            "App validated (dry run)"
        } else {
            "App updated"
        }
    );
    Ok(o.metadata.generation.unwrap_or(0))
}

fn conditions(o: &DynamicObject) -> Vec<Value> {
    o.data["status"]["conditions"]
        .as_array()
        .cloned()
        .unwrap_or_default()
}

/// Wait for `Settled=True` with `observedGeneration ≥ generation`, showing the App's current
/// conditions of that generation as they change.
pub async fn wait_settled(
    client: &kube::Client,
    generation: i64,
    timeout: Duration,
) -> anyhow::Result<()> {
    wait_settled_showing(client, generation, timeout, true).await
}

/// [`wait_settled`], printing the conditions only when `show` (`rdd run` stays silent: the
/// child's output is the only output).
pub async fn wait_settled_showing(
    client: &kube::Client,
    generation: i64,
    timeout: Duration,
    show: bool,
) -> anyhow::Result<()> {
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &app_resource());
    let tty = show && std::io::stderr().is_terminal();
    let deadline = (timeout != Duration::ZERO).then(|| Instant::now() + timeout);
    let mut shown: BTreeMap<String, String> = BTreeMap::new();
    let mut pending = String::from("Settled");
    let mut stream = watcher::watch_object(api.clone(), "app").boxed();
    loop {
        let next = match deadline {
            Some(d) => match tokio::time::timeout_at(d.into(), stream.next()).await {
                Ok(n) => n,
                Err(_) => {
                    if tty {
                        eprintln!();
                    }
                    return Err(timed_out(format!(
                        "timed out waiting for App state: still waiting for {pending}: context deadline exceeded"
                    )));
                }
            },
            None => stream.next().await,
        };
        let obj = match next {
            Some(Ok(Some(o))) => o,
            Some(Ok(None)) => anyhow::bail!("the App was deleted while waiting"),
            // The watcher re-establishes itself; transient errors are not fatal.
            Some(Err(e)) => {
                tracing::debug!(error = %e, "watch interrupted");
                continue;
            }
            None => anyhow::bail!("the App watch ended"),
        };
        let mut settled = false;
        for c in conditions(&obj) {
            let og = c["observedGeneration"].as_i64().unwrap_or(0);
            if og < generation {
                continue;
            }
            let t = c["type"].as_str().unwrap_or_default().to_string();
            let line = format!(
                "{}={}: {} ({})",
                t,
                c["status"].as_str().unwrap_or_default(),
                c["message"].as_str().unwrap_or_default(),
                c["reason"].as_str().unwrap_or_default()
            );
            if show && shown.get(&t) != Some(&line) {
                if tty {
                    eprint!("\r\x1b[2K{line}");
                } else {
                    eprintln!("{line}");
                }
                shown.insert(t.clone(), line.clone());
            }
            if t == "Settled" {
                if c["status"] == "True" {
                    settled = true;
                } else {
                    pending = line;
                }
            }
        }
        if settled {
            if tty {
                eprintln!();
            }
            return Ok(());
        }
    }
}

/// Rows of `rdd set --help` (cli.md §5.4): every property path in sorted order, objects as
/// `(object)`, leaves as `(<type>)` or `(<enum values joined by |>)`, with the first sentence of
/// the schema's description.
pub fn property_rows(spec: &Value) -> Vec<(String, String, String)> {
    fn walk(schema: &Value, prefix: &str, out: &mut Vec<(String, String, String)>) {
        let Some(props) = schema.get("properties").and_then(Value::as_object) else {
            return;
        };
        for (k, v) in props {
            let path = if prefix.is_empty() {
                k.clone()
            } else {
                format!("{prefix}.{k}")
            };
            let kind = if v.get("properties").is_some() {
                "(object)".to_string()
            } else if let Some(e) = v.get("enum").and_then(Value::as_array) {
                let vals: Vec<&str> = e.iter().filter_map(Value::as_str).collect();
                format!("({})", vals.join("|"))
            } else {
                format!(
                    "({})",
                    v.get("type").and_then(Value::as_str).unwrap_or("any")
                )
            };
            let desc = v
                .get("description")
                .and_then(Value::as_str)
                .map(first_sentence)
                .unwrap_or_default();
            out.push((path.clone(), kind, desc));
            walk(v, &path, out);
        }
    }
    let mut out = Vec::new();
    walk(spec, "", &mut out);
    out.sort();
    out
}

fn first_sentence(d: &str) -> String {
    let flat = d.split_whitespace().collect::<Vec<_>>().join(" ");
    match flat.find(". ") {
        Some(i) => flat[..=i].to_string(),
        None => flat,
    }
}

/// The `Available properties:` table, wrapped to `width` columns.
pub fn properties_table(spec: &Value, width: usize) -> String {
    let rows = property_rows(spec);
    let w1 = rows.iter().map(|r| r.0.len()).max().unwrap_or(0);
    let w2 = rows.iter().map(|r| r.1.len()).max().unwrap_or(0);
    let indent = 2 + w1 + 2 + w2 + 2;
    let room = width.saturating_sub(indent).max(20);
    let mut out = String::from("Available properties:\n");
    for (path, kind, desc) in rows {
        let mut lines = Vec::new();
        let mut line = String::new();
        for word in desc.split_whitespace() {
            if !line.is_empty() && line.len() + 1 + word.len() > room {
                lines.push(std::mem::take(&mut line));
            }
            if !line.is_empty() {
                line.push(' ');
            }
            line.push_str(word);
        }
        lines.push(line);
        out.push_str(format!("  {path:w1$}  {kind:w2$}  {}", lines[0]).trim_end());
        out.push('\n');
        for l in &lines[1..] {
            out.push_str(&format!("{:indent$}{l}\n", ""));
        }
    }
    out
}

/// `rdd set --help`: the static help, then the live properties (this starts the service).
pub async fn help(inst: &Instance, static_help: String) -> anyhow::Result<i32> {
    print!("{static_help}");
    control::ensure_running(inst).await?;
    let client = control::client(inst).await?;
    let spec = spec_schema(&client).await?;
    let width = std::env::var("COLUMNS")
        .ok()
        .and_then(|c| c.parse().ok())
        .unwrap_or(100);
    println!();
    print!("{}", properties_table(&spec, width));
    Ok(0)
}

pub async fn set(inst: &Instance, a: SetArgs) -> anyhow::Result<i32> {
    let props = split_args(&a.properties)?;
    control::ensure_running(inst).await?;
    let client = control::client(inst).await?;
    let generation = write(&client, &props, a.dry_run).await?;
    if a.dry_run || !a.wait.wait {
        return Ok(0);
    }
    wait_settled(&client, generation, a.wait.timeout).await?;
    Ok(0)
}

pub async fn start(inst: &Instance, w: WaitFlags) -> anyhow::Result<i32> {
    let props = BTreeMap::from([("running".to_string(), "true".to_string())]);
    control::ensure_running(inst).await?;
    let client = control::client(inst).await?;
    let generation = write(&client, &props, false).await?;
    if w.wait {
        wait_settled(&client, generation, w.timeout).await?;
    }
    Ok(0)
}

pub async fn stop(inst: &Instance, w: WaitFlags) -> anyhow::Result<i32> {
    control::ensure_running(inst).await?;
    let client = control::client(inst).await?;
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &app_resource());
    if api.get_opt("app").await?.is_none() {
        tracing::info!("App does not exist; nothing to stop");
        return Ok(0);
    }
    let props = BTreeMap::from([("running".to_string(), "false".to_string())]);
    let generation = write(&client, &props, false).await?;
    if w.wait {
        wait_settled(&client, generation, w.timeout).await?;
    }
    Ok(0)
}

/// `rdd ctl ARGS…`: kubectl against this instance (service started when needed), with this
/// instance's kubeconfig whatever the caller's KUBECONFIG; `rdd ctl wait-condition …` is rdd's
/// own waiter (cli.md §4).
pub async fn ctl(inst: &Instance, args: Vec<String>) -> anyhow::Result<i32> {
    control::ensure_running(inst).await?;
    if args.first().map(String::as_str) == Some("wait-condition") {
        return crate::wait::wait_condition(inst, &args[1..]).await;
    }
    let kubeconfig = inst.dir().join("config.yaml");
    crate::passthrough::run("kubectl", &args, &[("KUBECONFIG", &kubeconfig)])
}

#[cfg(test)]
mod tests {
    use super::*;

    fn schema() -> Value {
        json!({"type": "object", "properties": {
            "running": {"type": "boolean"},
            "containerEngine": {"type": "object", "properties": {
                "name": {"type": "string", "enum": ["moby", "containerd"]}}},
            "kubernetes": {"type": "object", "properties": {
                "enabled": {"type": "boolean"}, "version": {"type": "string"}}}
        }})
    }

    #[test]
    fn resolves_and_coerces() {
        let s = schema();
        assert_eq!(resolve(&s, "running", "T"), Ok(json!(true)));
        assert_eq!(
            resolve(&s, "containerEngine.name", "containerd"),
            Ok(json!("containerd"))
        );
        assert_eq!(
            resolve(&s, "containerEngine.name", "podman").unwrap_err(),
            "invalid value \"podman\" for \"containerEngine.name\": valid values: moby, containerd"
        );
        assert_eq!(
            resolve(&s, "running", "yes").unwrap_err(),
            "invalid value \"yes\" for \"running\": expected boolean; use \"true\" or \"false\""
        );
        assert_eq!(
            resolve(&s, "bogus", "1").unwrap_err(),
            "bogus: unknown property \"bogus\"; valid properties: containerEngine.name, kubernetes.enabled, kubernetes.version, running"
        );
        assert_eq!(
            resolve(&s, "kubernetes.x", "1").unwrap_err(),
            "kubernetes.x: unknown property \"x\" under \"kubernetes\"; valid properties: enabled, version"
        );
        assert_eq!(
            resolve(&s, "kubernetes", "1").unwrap_err(),
            "kubernetes: \"kubernetes\" is an object; set its fields, e.g. \"kubernetes.enabled\""
        );
        assert_eq!(
            resolve(&s, "running.x", "1").unwrap_err(),
            "running.x: \"running\" is not an object and has no sub-properties"
        );
    }

    #[test]
    fn help_table_lists_every_path() {
        let mut s = schema();
        s["properties"]["running"]["description"] =
            json!("Desired VM state: true runs the VM. More detail here.");
        let t = properties_table(&s, 120);
        let lines: Vec<&str> = t.lines().collect();
        assert_eq!(lines[0], "Available properties:");
        assert!(lines[1].trim_start().starts_with("containerEngine "), "{t}");
        assert!(t.contains("(moby|containerd)"), "{t}");
        assert!(t.contains("(object)"), "{t}");
        let running = lines
            .iter()
            .find(|l| l.trim_start().starts_with("running "))
            .unwrap();
        assert!(running.contains("(boolean)"), "{t}");
        assert!(
            running.ends_with("Desired VM state: true runs the VM."),
            "{t}"
        );
        assert!(!t.contains("More detail"), "{t}");
    }

    #[test]
    fn arguments() {
        assert!(
            split_args(&["running".into()])
                .unwrap_err()
                .to_string()
                .contains("expected PROPERTY=VALUE")
        );
        assert!(
            split_args(&["=1".into()])
                .unwrap_err()
                .to_string()
                .contains("must not be empty")
        );
        let m = split_args(&["a=1".into(), "a=2".into()]).unwrap();
        assert_eq!(m["a"], "2");
    }
}
