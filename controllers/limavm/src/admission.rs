//! The LimaVM admission webhooks (resources.md §2.6), served by this process with the kit's
//! webhook server:
//!
//! - `/mutate-limavm` (`limavm-defaulter`, LimaVM CREATE): cleanup finalizer, cluster-wide name
//!   uniqueness, and the template copy `<name>-template` (label, owned-by-LimaVM finalizer);
//! - `/validate-limavm` (`limavm-validator`, LimaVM DELETE): refused while owned;
//! - `/validate-template` (`limavm-configmap-validator`, labelled ConfigMaps): the template is
//!   parsed and run through `limactl template validate`; owned copies cannot lose their label
//!   or be deleted.
//!
//! The kit's handlers are synchronous; the two that call the API server or `limactl` block
//! their (multi-threaded) runtime worker with `block_in_place`.

use std::collections::BTreeMap;

use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::{Api, ListParams, Patch, PatchParams, PostParams};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, Operation};
use kube::{Client, ResourceExt};
use rdd_api::limavm::LimaVM;
use rdd_api::names;
use rdd_kit::webhook::Routes;
use serde_json::{Value, json};

use crate::limactl::Limactl;

fn block<F: std::future::Future>(f: F) -> F::Output {
    tokio::task::block_in_place(|| tokio::runtime::Handle::current().block_on(f))
}

pub fn routes(client: Client, limactl: Limactl) -> Routes {
    Routes::default()
        .handle("/mutate-limavm", move |req| {
            block(mutate_limavm(&client, req))
        })
        .handle("/validate-limavm", validate_limavm)
        .handle("/validate-template", move |req| {
            block(validate_template(&limactl, req))
        })
}

fn owned_kind(finalizers: &[String]) -> Option<&str> {
    finalizers
        .iter()
        .find_map(|f| f.strip_prefix(names::OWNED_BY_PREFIX))
}

async fn mutate_limavm(
    client: &Client,
    req: &AdmissionRequest<DynamicObject>,
) -> AdmissionResponse {
    let resp = AdmissionResponse::from(req);
    if req.operation != Operation::Create {
        return resp;
    }
    let Some(obj) = req.object.as_ref() else {
        return resp;
    };
    let name = obj.name_any();
    let ns = req
        .namespace
        .clone()
        .or_else(|| obj.namespace())
        .unwrap_or_else(|| "default".into());
    let dry_run = req.dry_run;
    if obj.metadata.deletion_timestamp.is_none() {
        let all: Api<LimaVM> = Api::all(client.clone());
        match all.list(&ListParams::default()).await {
            Ok(list) => {
                // Same namespace: the store answers AlreadyExists itself; the live VM's copy
                // must not be touched.
                if list
                    .items
                    .iter()
                    .any(|o| o.name_any() == name && o.namespace().as_deref() == Some(&ns))
                {
                    return resp;
                }
                if let Some(other) = list
                    .items
                    .iter()
                    .find(|o| o.name_any() == name && o.namespace().as_deref() != Some(&ns))
                {
                    return resp.deny(format!(
                        "LimaVM name \"{name}\" is already used in namespace \"{}\"; LimaVM names must be unique across all namespaces",
                        other.namespace().unwrap_or_default()
                    ));
                }
            }
            Err(e) => return resp.deny(format!("listing LimaVMs: {e}")),
        }
    }
    let tref = obj.data.pointer("/spec/templateRef");
    let tname = tref
        .and_then(|t| t.get("name"))
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_string();
    let tns = tref
        .and_then(|t| t.get("namespace"))
        .and_then(Value::as_str)
        .filter(|s| !s.is_empty())
        .unwrap_or(&ns)
        .to_string();
    let source: Api<ConfigMap> = Api::namespaced(client.clone(), &tns);
    let template = match source.get(&tname).await {
        Ok(cm) => cm
            .data
            .and_then(|d| d.get("template").cloned())
            .unwrap_or_default(),
        Err(e) => {
            return resp.deny(format!(
                "failed to fetch template data: failed to get templateRef ConfigMap \"{tname}\" in namespace \"{tns}\": {e}"
            ));
        }
    };
    if let Err(e) = write_copy(client, &ns, &name, &template, dry_run).await {
        return resp.deny(e);
    }
    let finalizers = obj.finalizers();
    if finalizers.iter().any(|f| f == names::CLEANUP_FINALIZER) {
        return resp;
    }
    let op = if obj.metadata.finalizers.is_none() {
        json!([{"op": "add", "path": "/metadata/finalizers", "value": [names::CLEANUP_FINALIZER]}])
    } else {
        json!([{"op": "add", "path": "/metadata/finalizers/-", "value": names::CLEANUP_FINALIZER}])
    };
    match serde_json::from_value::<json_patch::Patch>(op).map(|p| resp.clone().with_patch(p)) {
        Ok(Ok(r)) => r,
        Ok(Err(e)) => AdmissionResponse::invalid(e.to_string()),
        Err(e) => AdmissionResponse::invalid(e.to_string()),
    }
}

/// Create `<name>-template` (resources.md §3.2). A leftover copy of ours (an earlier admission
/// whose LimaVM create then failed) gets the new data; one being deleted, or an unrelated
/// ConfigMap of that name, refuses the create.
async fn write_copy(
    client: &Client,
    ns: &str,
    name: &str,
    template: &str,
    dry_run: bool,
) -> Result<(), String> {
    let cms: Api<ConfigMap> = Api::namespaced(client.clone(), ns);
    let copy = names::template_copy_name(name);
    let cm = ConfigMap {
        metadata: kube::api::ObjectMeta {
            name: Some(copy.clone()),
            namespace: Some(ns.to_string()),
            labels: Some(BTreeMap::from([(
                names::TEMPLATE_CONFIGMAP_LABEL.to_string(),
                "true".to_string(),
            )])),
            finalizers: Some(vec![names::owned_by("LimaVM")]),
            ..Default::default()
        },
        data: Some(BTreeMap::from([(
            "template".to_string(),
            template.to_string(),
        )])),
        ..Default::default()
    };
    let pp = PostParams {
        dry_run,
        ..Default::default()
    };
    // Looked up first: a dry-run create does not report an existing name on every server.
    let found = cms.get_opt(&copy).await.map_err(|e| e.to_string())?;
    let created = match found {
        Some(_) => Err(None),
        None => cms.create(&pp, &cm).await.map(|_| ()).map_err(|e| match e {
            kube::Error::Api(s) if s.code == 409 => None,
            e => Some(e),
        }),
    };
    match created {
        Ok(()) => Ok(()),
        Err(None) => {
            let existing = cms.get(&copy).await.map_err(|e| e.to_string())?;
            if existing.metadata.deletion_timestamp.is_some() {
                return Err(format!(
                    "template ConfigMap \"{copy}\" is still being deleted; retry"
                ));
            }
            // Only a copy of ours left by an earlier admission whose create failed afterwards
            // (labelled, owned-by-LimaVM) is adopted; any other ConfigMap of that name is
            // somebody else's and survives.
            let ours = existing
                .labels()
                .get(names::TEMPLATE_CONFIGMAP_LABEL)
                .is_some_and(|v| v == "true")
                && existing
                    .finalizers()
                    .iter()
                    .any(|f| *f == names::owned_by("LimaVM"));
            if !ours {
                return Err(format!(
                    "failed to create template ConfigMap \"{copy}\": configmaps \"{copy}\" already exists"
                ));
            }
            let patch = PatchParams {
                dry_run,
                ..Default::default()
            };
            cms.patch(
                &copy,
                &patch,
                &Patch::Merge(json!({
                    "metadata": {"labels": {names::TEMPLATE_CONFIGMAP_LABEL: "true"},
                                 "finalizers": [names::owned_by("LimaVM")]},
                    "data": {"template": template},
                })),
            )
            .await
            .map(|_| ())
            .map_err(|e| format!("failed to update template ConfigMap \"{copy}\": {e}"))
        }
        Err(Some(e)) => Err(format!(
            "failed to create template ConfigMap \"{copy}\": {e}"
        )),
    }
}

fn validate_limavm(req: &AdmissionRequest<DynamicObject>) -> AdmissionResponse {
    let resp = AdmissionResponse::from(req);
    if req.operation != Operation::Delete {
        return resp;
    }
    let Some(old) = req.old_object.as_ref() else {
        return resp;
    };
    match owned_kind(old.finalizers()) {
        Some(kind) => resp.deny(format!(
            "cannot delete \"{}\": owned by {kind}; delete the {kind} resource instead",
            old.name_any()
        )),
        None => resp,
    }
}

/// The checks of lima.md §2.4: key present, non-empty, parses, `limactl template validate`.
pub async fn check_template(limactl: &Limactl, data: Option<&Value>) -> Result<(), String> {
    let Some(t) = data.and_then(|d| d.get("template")) else {
        return Err("template ConfigMap must have a \"template\" data entry".into());
    };
    let t = t.as_str().unwrap_or_default();
    if t.is_empty() {
        return Err("\"template\" data cannot be empty".into());
    }
    serde_saphyr::from_str::<Value>(t).map_err(|e| format!("failed to parse template: {e}"))?;
    limactl
        .validate(t)
        .await
        .map_err(|e| format!("failed to validate template: {e}"))
}

async fn validate_template(
    limactl: &Limactl,
    req: &AdmissionRequest<DynamicObject>,
) -> AdmissionResponse {
    let resp = AdmissionResponse::from(req);
    match req.operation {
        Operation::Delete => {
            if let Some(old) = req.old_object.as_ref()
                && let Some(kind) = owned_kind(old.finalizers())
            {
                return resp.deny(format!(
                    "cannot delete \"{}\": owned by {kind}; delete the {kind} resource instead",
                    old.name_any()
                ));
            }
            resp
        }
        Operation::Create | Operation::Update => {
            let Some(obj) = req.object.as_ref() else {
                return resp;
            };
            if req.operation == Operation::Update {
                let labelled = |o: &DynamicObject| {
                    o.labels()
                        .get(names::TEMPLATE_CONFIGMAP_LABEL)
                        .map(String::as_str)
                        == Some("true")
                };
                if req.old_object.as_ref().is_some_and(labelled)
                    && !labelled(obj)
                    && owned_kind(obj.finalizers()).is_some()
                {
                    return resp.deny(format!(
                        "cannot remove {} label: resource is owned",
                        names::TEMPLATE_CONFIGMAP_LABEL
                    ));
                }
                // A metadata-only change (finalizer removal on the way out) is not re-validated.
                if obj.metadata.deletion_timestamp.is_some() {
                    return resp;
                }
            }
            match check_template(limactl, obj.data.get("data")).await {
                Ok(()) => resp,
                Err(e) => resp.deny(e),
            }
        }
        _ => resp,
    }
}
