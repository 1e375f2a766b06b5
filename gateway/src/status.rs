//! Docker errors as gRPC statuses, so a controller can tell "gone" from "busy" from "down"
//! without parsing messages.

use bollard::errors::Error;
use tonic::{Code, Status};

use crate::engine::Endpoint;

pub fn code_for_http(status: u16) -> Code {
    match status {
        400 => Code::InvalidArgument,
        401 => Code::Unauthenticated,
        403 => Code::PermissionDenied,
        404 => Code::NotFound,
        // Docker says 409 for "in use", "is not running", "already paused", name conflicts: the
        // object exists but is not in a state that allows the call.
        409 => Code::FailedPrecondition,
        501 => Code::Unimplemented,
        503 => Code::Unavailable,
        500..=599 => Code::Internal,
        _ => Code::Unknown,
    }
}

pub fn from_docker(op: &str, endpoint: &Endpoint, e: Error) -> Status {
    match e {
        Error::DockerResponseServerError {
            status_code,
            message,
        } => Status::new(code_for_http(status_code), message),
        Error::RequestTimeoutError => {
            Status::deadline_exceeded(format!("Docker {op} at {endpoint} timed out"))
        }
        Error::JsonDataError { .. } | Error::JsonSerdeError { .. } => {
            Status::internal(format!("Docker {op}: unexpected answer: {e}"))
        }
        Error::SocketNotFoundError(_)
        | Error::IOError { .. }
        | Error::HyperResponseError { .. }
        | Error::HyperLegacyError { .. }
        | Error::HttpClientError { .. } => {
            Status::unavailable(format!("Docker at {endpoint} is unreachable ({op}): {e}"))
        }
        other => Status::unknown(format!("Docker {op}: {other}")),
    }
}

/// Reject before any Docker call.
pub fn require(field: &str, value: &str) -> Result<(), Status> {
    if value.trim().is_empty() {
        return Err(Status::invalid_argument(format!(
            "{field} must not be empty"
        )));
    }
    if value.contains('/') && field != "reference" {
        return Err(Status::invalid_argument(format!(
            "{field} {value:?} must not contain '/'"
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes() {
        let ep = Endpoint::Unix("/x".into());
        let s = from_docker(
            "inspect",
            &ep,
            Error::DockerResponseServerError {
                status_code: 404,
                message: "No such container: x".into(),
            },
        );
        assert_eq!(
            (s.code(), s.message()),
            (Code::NotFound, "No such container: x")
        );
        assert_eq!(code_for_http(409), Code::FailedPrecondition);
        let down = from_docker(
            "ping",
            &ep,
            Error::IOError {
                err: std::io::Error::other("refused"),
            },
        );
        assert_eq!(down.code(), Code::Unavailable);
        assert!(down.message().contains("unix:///x"));
        assert!(require("id", "").is_err());
        assert!(require("id", "a/b").is_err());
        assert!(require("reference", "busybox:latest").is_ok());
    }
}
