//! The admin kubeconfig: CA data embedded, admin client certificate (group system:masters).

use std::path::Path;

use base64::Engine;
use serde_json::json;

use crate::tls::{Pki, TlsError, write_private};

pub fn render(pki: &Pki, server: &str, context: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {"server": server, "certificate-authority-data": b64(&pki.ca_pem)}}],
        "users": [{"name": context, "user": {"client-certificate-data": b64(&pki.admin_cert_pem), "client-key-data": b64(&pki.admin_key_pem)}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": context}}],
        "current-context": context,
        "preferences": {},
    });
    // JSON is valid YAML; every kubeconfig reader accepts it.
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// Write atomically with mode 0600.
pub fn write(path: &Path, pki: &Pki, server: &str, context: &str) -> Result<(), TlsError> {
    write_private(path, render(pki, server, context).as_bytes(), 0o600)
}

/// A kubeconfig that authenticates with a bearer token (the per-identity kubeconfigs
/// `rdd svc token create --kubeconfig` writes for controllers and users).
pub fn render_token(ca_pem: &str, server: &str, context: &str, user: &str, token: &str) -> String {
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s.as_bytes());
    let doc = json!({
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [{"name": context, "cluster": {"server": server, "certificate-authority-data": b64(ca_pem)}}],
        "users": [{"name": user, "user": {"token": token}}],
        "contexts": [{"name": context, "context": {"cluster": context, "user": user}}],
        "current-context": context,
        "preferences": {},
    });
    serde_json::to_string_pretty(&doc).unwrap_or_default()
}

/// Write a token kubeconfig atomically with mode 0600 (it holds a credential).
pub fn write_token(
    path: &Path,
    ca_pem: &str,
    server: &str,
    context: &str,
    user: &str,
    token: &str,
) -> Result<(), TlsError> {
    write_private(
        path,
        render_token(ca_pem, server, context, user, token).as_bytes(),
        0o600,
    )
}
