use std::fmt;

/// One field another manager owns with a different value than the applied one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Conflict {
    pub manager: String,
    /// Human readable path as upstream prints it, e.g. `.spec.replicas`.
    pub field: String,
    /// apiVersion recorded in the other manager's entry (upstream names it in messages).
    pub api_version: String,
    pub subresource: Option<String>,
}

#[derive(Debug, thiserror::Error)]
pub enum SsaError {
    #[error("{}", conflicts_message(.0))]
    Conflicts(Vec<Conflict>),
    #[error("{0}")]
    Invalid(String),
    #[error("invalid managedFields entry for manager {manager:?}: {reason}")]
    BadManagedFields { manager: String, reason: String },
}

impl Conflict {
    /// The cause message upstream attaches to each conflicting field.
    pub fn describe_manager(&self) -> String {
        match &self.subresource {
            Some(sub) if !sub.is_empty() => format!(
                "conflict with {:?} with subresource {:?} using {}",
                self.manager, sub, self.api_version
            ),
            _ => format!(
                "conflict with {:?} using {}",
                self.manager, self.api_version
            ),
        }
    }
}

fn conflicts_message(conflicts: &[Conflict]) -> String {
    let mut out = String::new();
    let n = conflicts.len();
    let plural = if n == 1 { "" } else { "s" };
    out.push_str(&format!("Apply failed with {n} conflict{plural}: "));
    let parts: Vec<String> = conflicts
        .iter()
        .map(|c| format!("{}: {}", c.describe_manager(), c.field))
        .collect();
    out.push_str(&parts.join("\n"));
    out
}

impl fmt::Display for Conflict {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.describe_manager(), self.field)
    }
}
