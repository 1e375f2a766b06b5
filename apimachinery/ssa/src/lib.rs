//! Server-side apply as kube-apiserver does it (structured-merge-diff
//! semantics) over `serde_json::Value` objects.
//!
//! List and map semantics come from an inlined OpenAPI v3 schema using the
//! Kubernetes extensions (`x-kubernetes-list-type`, `-list-map-keys`,
//! `-map-type`, and the strategic-merge `-patch-strategy`/`-patch-merge-key`
//! pair built-in kinds carry). Without a schema objects are granular maps and
//! lists are atomic.

mod apply;
mod error;
mod fieldset;
mod managed;
mod merge;
mod path;
mod schema;
mod walk;

pub use apply::{ApplyOutcome, Scope, apply, fields_of, update};
pub use error::{Conflict, SsaError};
pub use fieldset::FieldSet;
pub use managed::{FIELDS_V1, ManagedFieldsEntry, Operation};
pub use path::{PathElement, canonical_json, path_string};
