//! Every failure the API answers is a `meta.k8s.io/v1` `Status`.

use serde_json::{Value, json};

use crate::storage::StoreError;

#[derive(Clone, Debug, Default)]
pub struct Cause {
    pub reason: String,
    pub message: String,
    pub field: String,
}

/// Boxed so `Result<_, ApiError>` stays one pointer wide on the success path.
#[derive(Clone, Debug)]
pub struct ApiError(Box<ApiErrorInner>);

impl std::ops::Deref for ApiError {
    type Target = ApiErrorInner;
    fn deref(&self) -> &ApiErrorInner {
        &self.0
    }
}

impl std::ops::DerefMut for ApiError {
    fn deref_mut(&mut self) -> &mut ApiErrorInner {
        &mut self.0
    }
}

#[derive(Clone, Debug)]
pub struct ApiErrorInner {
    pub code: u16,
    pub reason: &'static str,
    pub message: String,
    pub name: Option<String>,
    pub group: Option<String>,
    pub kind: Option<String>,
    pub causes: Vec<Cause>,
    pub retry_after: Option<u64>,
    /// For 410 on a list continuation: a fresh token to continue inconsistently.
    pub continue_token: Option<String>,
}

impl std::fmt::Display for ApiError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}): {}", self.code, self.reason, self.message)
    }
}

impl std::error::Error for ApiError {}

pub type ApiResult<T> = Result<T, ApiError>;

impl ApiError {
    pub fn new(code: u16, reason: &'static str, message: impl Into<String>) -> ApiError {
        ApiError(Box::new(ApiErrorInner {
            code,
            reason,
            message: message.into(),
            name: None,
            group: None,
            kind: None,
            causes: Vec::new(),
            retry_after: None,
            continue_token: None,
        }))
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(400, "BadRequest", message)
    }
    pub fn unauthorized() -> ApiError {
        ApiError::new(401, "Unauthorized", "Unauthorized")
    }
    pub fn forbidden(message: impl Into<String>) -> ApiError {
        ApiError::new(403, "Forbidden", message)
    }
    pub fn method_not_allowed(message: impl Into<String>) -> ApiError {
        ApiError::new(405, "MethodNotAllowed", message)
    }
    pub fn not_acceptable(message: impl Into<String>) -> ApiError {
        ApiError::new(406, "NotAcceptable", message)
    }
    pub fn gone(message: impl Into<String>) -> ApiError {
        ApiError::new(410, "Expired", message)
    }
    pub fn too_large(message: impl Into<String>) -> ApiError {
        ApiError::new(413, "RequestEntityTooLarge", message)
    }
    pub fn unsupported_media(message: impl Into<String>) -> ApiError {
        ApiError::new(415, "UnsupportedMediaType", message)
    }
    pub fn too_many_requests() -> ApiError {
        let mut e = ApiError::new(
            429,
            "TooManyRequests",
            "Too many requests, please try again later.",
        );
        e.retry_after = Some(1);
        e
    }
    pub fn internal(message: impl Into<String>) -> ApiError {
        ApiError::new(
            500,
            "InternalError",
            format!("Internal error occurred: {}", message.into()),
        )
    }
    pub fn unavailable(message: impl Into<String>) -> ApiError {
        ApiError::new(503, "ServiceUnavailable", message)
    }

    /// `<resource>[.group] "<name>" not found`, as upstream phrases it.
    pub fn not_found(group: &str, resource: &str, name: &str) -> ApiError {
        let mut e = ApiError::new(
            404,
            "NotFound",
            format!("{} \"{name}\" not found", qualified(group, resource)),
        );
        e.name = Some(name.to_string());
        e.group = Some(group.to_string());
        e.kind = Some(resource.to_string());
        e
    }

    pub fn already_exists(group: &str, resource: &str, name: &str) -> ApiError {
        let mut e = ApiError::new(
            409,
            "AlreadyExists",
            format!("{} \"{name}\" already exists", qualified(group, resource)),
        );
        e.name = Some(name.to_string());
        e.group = Some(group.to_string());
        e.kind = Some(resource.to_string());
        e
    }

    pub fn conflict(group: &str, resource: &str, name: &str, detail: &str) -> ApiError {
        let mut e = ApiError::new(
            409,
            "Conflict",
            format!(
                "Operation cannot be fulfilled on {} \"{name}\": {detail}",
                qualified(group, resource)
            ),
        );
        e.name = Some(name.to_string());
        e.group = Some(group.to_string());
        e.kind = Some(resource.to_string());
        e
    }

    /// 422 with one cause per field error: `<Kind>[.group] "<name>" is invalid: <errors>`.
    pub fn invalid(group: &str, kind: &str, name: &str, causes: Vec<Cause>) -> ApiError {
        let summary = if causes.len() == 1 {
            cause_text(&causes[0])
        } else {
            format!(
                "[{}]",
                causes.iter().map(cause_text).collect::<Vec<_>>().join(", ")
            )
        };
        let mut e = ApiError::new(
            422,
            "Invalid",
            format!(
                "{} \"{name}\" is invalid: {summary}",
                qualified(group, kind)
            ),
        );
        e.name = Some(name.to_string());
        e.group = Some(group.to_string());
        e.kind = Some(kind.to_string());
        e.causes = causes;
        e
    }

    pub fn with_causes(mut self, causes: Vec<Cause>) -> ApiError {
        self.causes = causes;
        self
    }

    pub fn to_status(&self) -> Value {
        let mut details = serde_json::Map::new();
        if let Some(n) = &self.name {
            details.insert("name".into(), json!(n));
        }
        if let Some(g) = &self.group
            && !g.is_empty()
        {
            details.insert("group".into(), json!(g));
        }
        if let Some(k) = &self.kind {
            details.insert("kind".into(), json!(k));
        }
        if !self.causes.is_empty() {
            details.insert(
                "causes".into(),
                Value::Array(
                    self.causes
                        .iter()
                        .map(|c| {
                            let mut m = serde_json::Map::new();
                            if !c.reason.is_empty() {
                                m.insert("reason".into(), json!(c.reason));
                            }
                            if !c.message.is_empty() {
                                m.insert("message".into(), json!(c.message));
                            }
                            if !c.field.is_empty() {
                                m.insert("field".into(), json!(c.field));
                            }
                            Value::Object(m)
                        })
                        .collect(),
                ),
            );
        }
        if let Some(r) = self.retry_after {
            details.insert("retryAfterSeconds".into(), json!(r));
        }
        let mut metadata = serde_json::Map::new();
        if let Some(c) = &self.continue_token {
            metadata.insert("continue".into(), json!(c));
        }
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": metadata,
            "status": "Failure",
            "message": self.message,
            "reason": self.reason,
            "code": self.code,
        });
        if !details.is_empty() {
            status["details"] = Value::Object(details);
        }
        status
    }
}

fn qualified(group: &str, resource: &str) -> String {
    if group.is_empty() {
        resource.to_string()
    } else {
        format!("{resource}.{group}")
    }
}

fn cause_text(c: &Cause) -> String {
    if c.field.is_empty() || c.message.starts_with(&c.field) {
        c.message.clone()
    } else {
        format!("{}: {}", c.field, c.message)
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Compacted { .. } => ApiError::gone(format!(
                "The resourceVersion for the provided list is too old. ({e})"
            )),
            StoreError::Unavailable(m) => ApiError::unavailable(m),
            StoreError::Internal(m) => ApiError::internal(m),
            // These are mapped by callers that know the resource; reaching here is a bug.
            other => ApiError::internal(other.to_string()),
        }
    }
}
