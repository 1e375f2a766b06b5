//! The Kubernetes condition shape shared by every kind (resources.md §0.2).

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

/// Longest condition message; longer ones are cut to exactly this many characters, ending in
/// [`TRUNCATION_SUFFIX`] (R-APP-S5).
pub const MAX_MESSAGE_CHARS: usize = 32768;
pub const TRUNCATION_SUFFIX: &str = "… (truncated)";

/// One observation of an aspect of the object's state.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct Condition {
    /// Type of condition in CamelCase or in foo.example.com/CamelCase.
    #[schemars(
        length(max = 316),
        regex(
            pattern = r"^([a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*/)?(([A-Za-z0-9][-A-Za-z0-9_.]*)?[A-Za-z0-9])$"
        )
    )]
    #[serde(rename = "type")]
    pub type_: String,
    /// Status of the condition: one of True, False, Unknown.
    #[schemars(extend("enum" = ["True", "False", "Unknown"]))]
    pub status: String,
    /// The generation of the object the condition was set from; conditions of an older
    /// generation are stale.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(range(min = 0))]
    pub observed_generation: Option<i64>,
    /// Last time the condition's status changed (RFC 3339).
    #[schemars(extend("format" = "date-time"))]
    pub last_transition_time: String,
    /// A programmatic identifier of the reason for the last transition, in CamelCase.
    #[schemars(
        length(min = 1, max = 1024),
        regex(pattern = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$")
    )]
    pub reason: String,
    /// A human readable message about the transition; may be empty. At most 32768 characters.
    #[schemars(length(max = 32768))]
    pub message: String,
}

/// Cut a message to [`MAX_MESSAGE_CHARS`] Unicode scalar values, suffix included.
pub fn truncate_message(message: &str) -> String {
    if message.chars().count() <= MAX_MESSAGE_CHARS {
        return message.to_string();
    }
    let keep = MAX_MESSAGE_CHARS - TRUNCATION_SUFFIX.chars().count();
    let mut out: String = message.chars().take(keep).collect();
    out.push_str(TRUNCATION_SUFFIX);
    out
}

/// A condition list as a list-map keyed by `type` (each writer owns only its own conditions
/// under server-side apply).
pub fn conditions_schema(generator: &mut schemars::SchemaGenerator) -> schemars::Schema {
    let mut s = generator.subschema_for::<Vec<Condition>>();
    s.insert("x-kubernetes-list-type".into(), "map".into());
    s.insert(
        "x-kubernetes-list-map-keys".into(),
        serde_json::json!(["type"]),
    );
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn r_app_s5_message_truncated_to_exact_length() {
        let long = "é".repeat(40_000);
        let t = truncate_message(&long);
        assert_eq!(t.chars().count(), MAX_MESSAGE_CHARS);
        assert!(t.ends_with(TRUNCATION_SUFFIX));
        assert_eq!(truncate_message("short"), "short");
        let exact = "x".repeat(MAX_MESSAGE_CHARS);
        assert_eq!(truncate_message(&exact), exact);
    }
}
