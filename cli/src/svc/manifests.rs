//! rdd's own manifests, compiled in and applied by `rdd svc serve` at every start with
//! server-side apply (field manager `rdd-svc`), exactly as `kubectl apply --server-side` would
//! apply them to a real cluster: the CRDs of `deploy/crds` and the admission policies of
//! `deploy/admission`.

use std::time::{Duration, Instant};

use anyhow::Context;
use kube::api::{Api, DynamicObject, Patch, PatchParams};
use kube::core::GroupVersionKind;

pub const FIELD_MANAGER: &str = "rdd-svc";

pub const CRDS: &[(&str, &str)] = &[
    (
        "apps.app.rancherdesktop.io.yaml",
        include_str!("../../../deploy/crds/apps.app.rancherdesktop.io.yaml"),
    ),
    (
        "containercreaterequests.containers.rancherdesktop.io.yaml",
        include_str!(
            "../../../deploy/crds/containercreaterequests.containers.rancherdesktop.io.yaml"
        ),
    ),
    (
        "containernamespaces.containers.rancherdesktop.io.yaml",
        include_str!("../../../deploy/crds/containernamespaces.containers.rancherdesktop.io.yaml"),
    ),
    (
        "containers.containers.rancherdesktop.io.yaml",
        include_str!("../../../deploy/crds/containers.containers.rancherdesktop.io.yaml"),
    ),
    (
        "imagepullrequests.containers.rancherdesktop.io.yaml",
        include_str!("../../../deploy/crds/imagepullrequests.containers.rancherdesktop.io.yaml"),
    ),
    (
        "imagepushrequests.containers.rancherdesktop.io.yaml",
        include_str!("../../../deploy/crds/imagepushrequests.containers.rancherdesktop.io.yaml"),
    ),
    (
        "images.containers.rancherdesktop.io.yaml",
        include_str!("../../../deploy/crds/images.containers.rancherdesktop.io.yaml"),
    ),
    (
        "imagescanrequests.containers.rancherdesktop.io.yaml",
        include_str!("../../../deploy/crds/imagescanrequests.containers.rancherdesktop.io.yaml"),
    ),
    (
        "limavms.lima.rancherdesktop.io.yaml",
        include_str!("../../../deploy/crds/limavms.lima.rancherdesktop.io.yaml"),
    ),
    (
        "volumecreaterequests.containers.rancherdesktop.io.yaml",
        include_str!("../../../deploy/crds/volumecreaterequests.containers.rancherdesktop.io.yaml"),
    ),
    (
        "volumes.containers.rancherdesktop.io.yaml",
        include_str!("../../../deploy/crds/volumes.containers.rancherdesktop.io.yaml"),
    ),
];

pub const ADMISSION: &[(&str, &str)] = &[
    (
        "container-action.yaml",
        include_str!("../../../deploy/admission/container-action.yaml"),
    ),
    (
        "containernamespace-delete.yaml",
        include_str!("../../../deploy/admission/containernamespace-delete.yaml"),
    ),
];

fn documents(text: &str) -> anyhow::Result<Vec<serde_json::Value>> {
    let mut out = Vec::new();
    for doc in text.split("\n---") {
        let doc = doc.trim_start_matches("---");
        if doc
            .lines()
            .all(|l| l.trim().is_empty() || l.trim_start().starts_with('#'))
        {
            continue;
        }
        let v: serde_json::Value = serde_saphyr::from_str(doc)?;
        if !v.is_null() {
            out.push(v);
        }
    }
    Ok(out)
}

async fn apply(client: &kube::Client, obj: serde_json::Value) -> anyhow::Result<()> {
    let api_version = obj["apiVersion"].as_str().unwrap_or_default().to_string();
    let kind = obj["kind"].as_str().unwrap_or_default().to_string();
    let name = obj["metadata"]["name"]
        .as_str()
        .unwrap_or_default()
        .to_string();
    let (group, version) = api_version.split_once('/').unwrap_or(("", &api_version));
    let gvk = GroupVersionKind::gvk(group, version, &kind);
    let (ar, _) = kube::discovery::pinned_kind(client, &gvk)
        .await
        .with_context(|| format!("discovering {api_version} {kind}"))?;
    let api: Api<DynamicObject> = Api::all_with(client.clone(), &ar);
    api.patch(
        &name,
        &PatchParams::apply(FIELD_MANAGER).force(),
        &Patch::Apply(&obj),
    )
    .await
    .with_context(|| format!("applying {kind} {name}"))?;
    Ok(())
}

/// Whether a manifest file belongs to an enabled controller: as in Go, each controller installs
/// the CRDs of its group, so an empty selection installs nothing.
pub fn wanted(file: &str, enabled: &[&str]) -> bool {
    let any = |names: &[&str]| names.iter().any(|n| enabled.contains(n));
    if file.contains("app.rancherdesktop.io") {
        any(&["app"])
    } else if file.contains("lima.rancherdesktop.io") {
        any(&["limavm"])
    } else {
        // containers.rancherdesktop.io CRDs and the Container/ContainerNamespace policies.
        any(&[
            "engine",
            "container",
            "containernamespace",
            "image",
            "volume",
        ])
    }
}

/// Apply the CRDs of the enabled controllers, wait until they are established, then the
/// admission policies.
pub async fn install(client: &kube::Client, enabled: &[&str]) -> anyhow::Result<()> {
    let mut crd_names = Vec::new();
    for (file, text) in CRDS.iter().filter(|(f, _)| wanted(f, enabled)) {
        for obj in documents(text).with_context(|| format!("deploy/crds/{file}"))? {
            crd_names.push(
                obj["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_string(),
            );
            apply(client, obj).await?;
        }
    }
    let crds: Api<k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition> =
        Api::all(client.clone());
    let deadline = Instant::now() + Duration::from_secs(30);
    for name in &crd_names {
        loop {
            let c = crds.get(name).await?;
            let established = c
                .status
                .and_then(|s| s.conditions)
                .unwrap_or_default()
                .iter()
                .any(|c| c.type_ == "Established" && c.status == "True");
            if established {
                break;
            }
            if Instant::now() > deadline {
                anyhow::bail!("CRD {name} was not established within 30s");
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    for (file, text) in ADMISSION.iter().filter(|(f, _)| wanted(f, enabled)) {
        for obj in documents(text).with_context(|| format!("deploy/admission/{file}"))? {
            apply(client, obj).await?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn on_disk(dir: &str) -> Vec<String> {
        let d = std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("..")
            .join(dir);
        let mut v: Vec<String> = std::fs::read_dir(d)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        v.sort();
        v
    }

    #[test]
    fn every_deploy_manifest_is_compiled_in_and_parses() {
        let names = |l: &[(&str, &str)]| l.iter().map(|(n, _)| n.to_string()).collect::<Vec<_>>();
        assert_eq!(on_disk("deploy/crds"), names(CRDS));
        assert_eq!(on_disk("deploy/admission"), names(ADMISSION));
        assert!(CRDS.iter().all(|(f, _)| !wanted(f, &[])));
        assert!(wanted("apps.app.rancherdesktop.io.yaml", &["app"]));
        assert!(!wanted("limavms.lima.rancherdesktop.io.yaml", &["app"]));
        assert!(wanted("container-action.yaml", &["engine"]));
        for (f, t) in CRDS.iter().chain(ADMISSION) {
            let docs = documents(t).unwrap();
            assert!(!docs.is_empty(), "{f}");
            assert!(
                docs.iter().all(|d| d["metadata"]["name"].is_string()),
                "{f}"
            );
        }
    }
}
