//! The identities `rdd svc` gives its controller processes: one ServiceAccount each in
//! `rdd-system`, with the least-privilege ClusterRole declared in `deploy/rbac/<name>.yaml`.
//! The manifests are compiled in and ensured at every start of the API server.

use anyhow::Context;

pub const NAMESPACE: &str = "rdd-system";

/// Shared objects first: the namespace must exist before its ServiceAccounts.
const COMMON: (&str, &str) = (
    "rdd-system",
    include_str!("../../../deploy/rbac/rdd-system.yaml"),
);

/// Every controller with its manifest.
pub const CONTROLLERS: &[(&str, &str)] = &[
    (
        "app-controller",
        include_str!("../../../deploy/rbac/app-controller.yaml"),
    ),
    (
        "limavm-controller",
        include_str!("../../../deploy/rbac/limavm-controller.yaml"),
    ),
    (
        "container-controller",
        include_str!("../../../deploy/rbac/container-controller.yaml"),
    ),
    (
        "image-controller",
        include_str!("../../../deploy/rbac/image-controller.yaml"),
    ),
    (
        "volume-controller",
        include_str!("../../../deploy/rbac/volume-controller.yaml"),
    ),
];

/// The objects of `deploy/rbac`, in the order they must be created.
pub fn manifests() -> anyhow::Result<Vec<serde_json::Value>> {
    let mut out = Vec::new();
    for (name, text) in std::iter::once(&COMMON).chain(CONTROLLERS) {
        out.extend(
            rdd_apiserver::authz::bootstrap::parse_manifests(text)
                .map_err(|e| anyhow::anyhow!("{e}"))
                .with_context(|| format!("deploy/rbac/{name}.yaml"))?,
        );
    }
    Ok(out)
}

/// The user name a controller's token authenticates as.
pub fn controller_user(name: &str) -> anyhow::Result<String> {
    if !CONTROLLERS.iter().any(|(n, _)| *n == name) {
        anyhow::bail!(
            "unknown controller {name:?}; known: {}",
            CONTROLLERS
                .iter()
                .map(|(n, _)| *n)
                .collect::<Vec<_>>()
                .join(", ")
        );
    }
    Ok(rdd_apiserver::auth::service_account_user(NAMESPACE, name))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_manifest_in_deploy_rbac_is_compiled_in_and_parses() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/rbac");
        let mut on_disk: Vec<String> = std::fs::read_dir(&dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        on_disk.sort();
        let mut embedded: Vec<String> = std::iter::once(&COMMON)
            .chain(CONTROLLERS)
            .map(|(n, _)| format!("{n}.yaml"))
            .collect();
        embedded.sort();
        assert_eq!(on_disk, embedded);
        let objs = manifests().unwrap();
        assert_eq!(objs[0]["kind"], "Namespace");
        for (name, _) in CONTROLLERS {
            let role = format!("rdd:{name}");
            assert!(
                objs.iter()
                    .any(|o| o["kind"] == "ClusterRole" && o["metadata"]["name"] == role),
                "{role}"
            );
            assert!(objs.iter().any(|o| o["kind"] == "ClusterRoleBinding"
                && o["subjects"][0]["name"] == *name
                && o["subjects"][0]["namespace"] == NAMESPACE));
        }
    }
}
