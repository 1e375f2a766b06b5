//! Finalizers, labels and annotations (resources.md §7), spelled once.

/// App and LimaVM teardown.
pub const CLEANUP_FINALIZER: &str = "rdd.rancherdesktop.io/cleanup";
/// Prefix of the "owned by" finalizers: `rdd.rancherdesktop.io/owned-by-<Kind>`.
pub const OWNED_BY_PREFIX: &str = "rdd.rancherdesktop.io/owned-by-";
/// Container, Image and Volume mirrors: API deletes are forwarded to Docker first.
pub const MIRROR_FINALIZER: &str = "engine.rancherdesktop.io/mirror";

pub const TEMPLATE_CONFIGMAP_LABEL: &str = "lima.rancherdesktop.io/template-configmap";
pub const RESTART_REQUESTED_ANNOTATION: &str = "lima.rancherdesktop.io/restartRequested";
pub const ACTION_ANNOTATION: &str = "containers.rancherdesktop.io/action";
pub const READY_ANNOTATION: &str = "rdd.rancherdesktop.io/ready";
pub const CONTROLLER_ANNOTATION: &str = "rdd.rancherdesktop.io/controller";

/// `rdd.rancherdesktop.io/owned-by-<kind>`.
pub fn owned_by(kind: &str) -> String {
    format!("{OWNED_BY_PREFIX}{kind}")
}

/// The template copy ConfigMap of a LimaVM; the one place this name is made (R-APP-S3).
pub fn template_copy_name(limavm: &str) -> String {
    format!("{limavm}-template")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_names() {
        assert_eq!(owned_by("App"), "rdd.rancherdesktop.io/owned-by-App");
        assert_eq!(template_copy_name("rd"), "rd-template");
    }
}
