//! rdd's API types, exactly as `shared/spec/resources.md` gives them. Every custom resource is
//! served in `v1alpha1`; kinds with a status expose it through the status subresource.
//!
//! The CRD manifests in `deploy/crds` are generated from these types by the `crdgen` binary
//! (`cargo run -p rdd-api --bin crdgen -- deploy/crds`), and CI fails when they differ.

pub mod app;
pub mod catalog;
pub mod conditions;
pub mod containers;
pub mod docs;
pub mod limavm;
pub mod names;
pub mod requests;

use k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::CustomResourceDefinition;
use kube::CustomResourceExt;

/// Every CRD rdd serves, in a stable order.
pub fn crds() -> Vec<CustomResourceDefinition> {
    let mut all = vec![
        app::App::crd(),
        limavm::LimaVM::crd(),
        containers::ContainerNamespace::crd(),
        containers::Container::crd(),
        containers::Image::crd(),
        containers::Volume::crd(),
        requests::ContainerCreateRequest::crd(),
        requests::ImagePullRequest::crd(),
        requests::ImagePushRequest::crd(),
        requests::ImageScanRequest::crd(),
        requests::VolumeCreateRequest::crd(),
    ];
    for crd in &mut all {
        // Mirrors have no desired state: their (empty) spec is optional. (ContainerNamespace has
        // no spec at all.)
        if matches!(
            crd.spec.names.kind.as_str(),
            "Container" | "Image" | "Volume"
        ) {
            for v in &mut crd.spec.versions {
                if let Some(schema) = v
                    .schema
                    .as_mut()
                    .and_then(|s| s.open_api_v3_schema.as_mut())
                {
                    let required: Vec<String> = schema
                        .required
                        .take()
                        .unwrap_or_default()
                        .into_iter()
                        .filter(|r| r != "spec")
                        .collect();
                    schema.required = (!required.is_empty()).then_some(required);
                    // ... and defaults to `{}`, so an object created without one (`kubectl
                    // apply` of a bare mirror) still reads as the typed kind: a typed informer
                    // fails on the first object it cannot decode.
                    if let Some(spec) = schema.properties.as_mut().and_then(|p| p.get_mut("spec")) {
                        spec.default = Some(
                            k8s_openapi::apiextensions_apiserver::pkg::apis::apiextensions::v1::JSON(
                                serde_json::json!({}),
                            ),
                        );
                    }
                }
            }
        }
    }
    all
}
