//! What the three mirror controllers (container, image, volume) share (`shared/design/processes.md`):
//!
//! - [`gateway`]: the docker-gateway client, with trace propagation on every call;
//! - [`app`]: what the App wants (mirror, stopped, not applicable, gone) and the writer of this
//!   controller's `<Kind>sSynced` App condition (server-side apply of that one list-map entry);
//! - [`session`]: the engine session per App — subscribe first, wait for `Synced`, full sync,
//!   per-event applies, relist on `Resync`, `ConnectFailed` on a gateway disconnect, stop and
//!   sweep when no longer wanted;
//! - [`sweep`]: strip only our finalizer, delete, and report objects held by someone else's;
//! - [`objects`]: create-with-finalizer, finalizer repair and release of one kind's mirrors,
//!   compared against the informer's copy;
//! - [`deletion`]: API-side deletion forwarding rows shared by the kinds, and the report of a
//!   removal Docker refuses;
//! - [`labels`]: the configured label selector as Docker filters and as a matcher;
//! - [`process`]: flags, configuration and the wiring of a mirror controller binary.

pub mod app;
pub mod deletion;
pub mod gateway;
pub mod labels;
pub mod memory;
pub mod objects;
pub mod process;
pub mod session;
pub mod sweep;

/// The mirror finalizer (resources.md §7.1): an API delete is forwarded to Docker first.
pub const FINALIZER: &str = "engine.rancherdesktop.io/mirror";

#[derive(Debug, thiserror::Error)]
pub enum MirrorError {
    #[error("kubernetes API: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Kit(#[from] rdd_kit::KitError),
    #[error("docker-gateway: {0}")]
    Gateway(#[from] tonic::Status),
    #[error("serialization: {0}")]
    Json(#[from] serde_json::Error),
    #[error("{0}")]
    Other(String),
}

/// True for a Kubernetes API error with this HTTP code.
pub fn is_api_status(e: &kube::Error, code: u16) -> bool {
    matches!(e, kube::Error::Api(s) if s.code == code)
}

/// Hex SHA-256 of `parts` joined by NUL bytes: the mirror names of resources.md §5.3 and §5.4
/// (`img-<sha256(id NUL tag)>`, `img-<sha256(id)>`, `vol-<sha256(name)>`).
pub fn sha256_hex(parts: &[&str]) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    for (i, p) in parts.iter().enumerate() {
        if i > 0 {
            h.update([0u8]);
        }
        h.update(p.as_bytes());
    }
    h.finalize()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<String>()
}

/// A Docker time if it parses as RFC 3339 and is not Go's zero time (Docker's "never").
pub fn docker_time(s: &str) -> Option<String> {
    let t = chrono::DateTime::parse_from_rfc3339(s).ok()?;
    if t.timestamp() <= -62_135_596_800 {
        return None;
    }
    Some(s.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_hash_id_nul_tag() {
        // printf 'a\0b' | sha256sum; printf 'sha256:abc' | sha256sum
        assert_eq!(
            sha256_hex(&["a", "b"]),
            "59b271ae1bbcb1d31d41929817f4b16fb439eb4f31520b5ad1d5ce98920a7138"
        );
        assert_eq!(
            sha256_hex(&["sha256:abc"]),
            "67e9bc3cfd2163c2978358dfe00d2f912cd4ee0c99f077c3583b39b48aebb124"
        );
    }

    #[test]
    fn docker_times() {
        assert_eq!(
            docker_time("2024-05-01T10:00:00.5Z").as_deref(),
            Some("2024-05-01T10:00:00.5Z")
        );
        assert_eq!(docker_time("0001-01-01T00:00:00Z"), None);
        assert_eq!(docker_time(""), None);
    }
}
