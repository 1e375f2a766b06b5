//! Custom-resource schema machinery for CRDs: structural-schema checks,
//! pruning of unknown fields, defaulting and validation, for schemas given
//! as `serde_json::Value` in the shape of apiextensions.k8s.io/v1
//! `JSONSchemaProps` (`openAPIV3Schema`).
//!
//! Behaviour and error messages follow the Kubernetes API server so that
//! clients see the same responses. For repeated use, parse once with
//! [`Schema::parse`] and call the methods; the free functions parse on
//! every call.

mod error;
mod formats;
mod pattern;
mod prune;
mod schema;
mod structural;
mod validate;

pub use error::{
    FieldError, REASON_DUPLICATE, REASON_FORBIDDEN, REASON_INTERNAL, REASON_INVALID,
    REASON_NOT_FOUND, REASON_NOT_SUPPORTED, REASON_REQUIRED, REASON_TOO_LONG, REASON_TOO_MANY,
    REASON_TYPE_INVALID,
};
pub use schema::{AdditionalProperties, Schema};

use serde_json::Value;

/// Checks that `schema` is an acceptable CRD schema: well-formed keywords,
/// the structural-schema rules, defaults that validate and are pruned, and
/// the Kubernetes extension rules. `path` prefixes every error field
/// (e.g. `spec.versions[0].schema.openAPIV3Schema`).
pub fn check_structural(schema: &Value, path: &str) -> Vec<FieldError> {
    structural::check(schema, path)
}

/// Removes fields the schema does not specify, treating `obj` as a resource
/// root (`apiVersion`, `kind`, `metadata` are kept). Returns the removed
/// paths, sorted, in the form `spec.foo` / `spec.items[0].bar`.
pub fn prune(schema: &Value, obj: &mut Value) -> Vec<String> {
    Schema::parse_lenient(schema, "").0.prune(obj)
}

/// Drops non-nullable nulls that have no default, then applies defaults.
pub fn apply_defaults(schema: &Value, obj: &mut Value) {
    Schema::parse_lenient(schema, "").0.apply_defaults(obj)
}

/// Validates an (already pruned and defaulted) object; errors come in
/// document order.
pub fn validate(schema: &Value, obj: &Value) -> Vec<FieldError> {
    Schema::parse_lenient(schema, "").0.validate(obj)
}

impl Schema {
    /// See [`prune`].
    pub fn prune(&self, obj: &mut Value) -> Vec<String> {
        prune::prune_value(self, obj, true)
    }

    /// See [`apply_defaults`].
    pub fn apply_defaults(&self, obj: &mut Value) {
        prune::default_value(self, obj)
    }

    /// See [`validate`].
    pub fn validate(&self, obj: &Value) -> Vec<FieldError> {
        validate::validate_value(self, obj, "")
    }

    /// Like [`Schema::validate`] with every error field prefixed by `path`.
    pub fn validate_at(&self, obj: &Value, path: &str) -> Vec<FieldError> {
        validate::validate_value(self, obj, path)
    }
}

#[cfg(test)]
mod tests;
