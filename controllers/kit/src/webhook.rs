//! The admission webhook server a controller process runs for the rules CEL cannot express:
//! HTTPS with the serving certificate `rdd svc` (or the chart) issues, `admission.k8s.io/v1`
//! AdmissionReview in and out, JSONPatch mutations, one handler per path.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper_util::rt::{TokioExecutor, TokioIo};
use kube::core::DynamicObject;
use kube::core::admission::{AdmissionRequest, AdmissionResponse, AdmissionReview};
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::KitError;

/// Decides one admission request.
pub type Handler = Arc<dyn Fn(&AdmissionRequest<DynamicObject>) -> AdmissionResponse + Send + Sync>;

/// Paths (e.g. `/validate-limavm`) and their handlers.
#[derive(Clone, Default)]
pub struct Routes(HashMap<String, Handler>);

impl Routes {
    pub fn handle(
        mut self,
        path: &str,
        h: impl Fn(&AdmissionRequest<DynamicObject>) -> AdmissionResponse + Send + Sync + 'static,
    ) -> Routes {
        self.0.insert(path.to_string(), Arc::new(h));
        self
    }
}

/// Admission bodies are bounded like API requests (3 MiB objects, twice in an update).
const MAX_REVIEW: usize = 8 * 1024 * 1024;

/// Answer one AdmissionReview body. A review that cannot be decoded gets a 400; a decoded one
/// always gets a review back, denied with the reason when the handler refuses.
pub fn review(routes: &Routes, path: &str, body: &[u8]) -> (StatusCode, Vec<u8>) {
    let Some(handler) = routes.0.get(path) else {
        return (StatusCode::NOT_FOUND, b"no webhook at this path".to_vec());
    };
    let review: AdmissionReview<DynamicObject> = match serde_json::from_slice(body) {
        Ok(r) => r,
        Err(e) => {
            return (
                StatusCode::BAD_REQUEST,
                format!("invalid AdmissionReview: {e}").into_bytes(),
            );
        }
    };
    let request: Result<AdmissionRequest<DynamicObject>, _> = review.try_into();
    let response = match request {
        Ok(req) => handler(&req),
        Err(e) => AdmissionResponse::invalid(e.to_string()),
    };
    let encoded = serde_json::to_value(response.into_review())
        .map(base64_patch)
        .map(denial_status)
        .and_then(|v| serde_json::to_vec(&v));
    match encoded {
        Ok(b) => (StatusCode::OK, b),
        Err(e) => (
            StatusCode::INTERNAL_SERVER_ERROR,
            e.to_string().into_bytes(),
        ),
    }
}

/// A denial says Forbidden (403) unless the handler chose a code, as controller-runtime's
/// `admission.Denied` does: kube-core's `deny` sets only the message, and the API server would
/// then report a bare 400 without a reason (`Error from server: …` instead of
/// `Error from server (Forbidden): …`).
fn denial_status(mut review: serde_json::Value) -> serde_json::Value {
    use serde_json::{Value, json};
    let Some(resp) = review.get_mut("response") else {
        return review;
    };
    if resp.get("allowed") == Some(&Value::Bool(true)) {
        return review;
    }
    let result = resp
        .as_object_mut()
        .map(|r| r.entry("status").or_insert_with(|| json!({})));
    if let Some(Value::Object(status)) = result {
        let code = status.get("code").and_then(Value::as_u64).unwrap_or(0);
        if code < 400 {
            status.insert("code".into(), json!(403));
            let reason = status.get("reason").and_then(Value::as_str).unwrap_or("");
            if reason.is_empty() {
                status.insert("reason".into(), json!("Forbidden"));
            }
        }
    }
    review
}

/// kube-core serializes `response.patch` as an array of byte values, but the API server (Go)
/// decodes `[]byte` only from a base64 string; rewrite it so real API servers accept the patch.
fn base64_patch(mut review: serde_json::Value) -> serde_json::Value {
    use base64::Engine;
    if let Some(arr) = review
        .pointer("/response/patch")
        .and_then(serde_json::Value::as_array)
    {
        let bytes: Vec<u8> = arr
            .iter()
            .filter_map(|b| b.as_u64().and_then(|b| u8::try_from(b).ok()))
            .collect();
        review["response"]["patch"] =
            serde_json::Value::String(base64::engine::general_purpose::STANDARD.encode(bytes));
    }
    review
}

fn tls(cert_pem: &str, key_pem: &str) -> Result<Arc<rustls::ServerConfig>, KitError> {
    let bad = |m: String| KitError::Config(format!("webhook TLS: {m}"));
    let certs = rustls_pemfile::certs(&mut cert_pem.as_bytes())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(e.to_string()))?;
    let key = rustls_pemfile::private_key(&mut key_pem.as_bytes())
        .map_err(|e| bad(e.to_string()))?
        .ok_or_else(|| bad("no private key".into()))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut cfg = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| bad(e.to_string()))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|e| bad(e.to_string()))?;
    cfg.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(Arc::new(cfg))
}

/// Serve `routes` over HTTPS on `addr`; returns the bound address.
pub async fn serve(
    addr: SocketAddr,
    cert_pem: &str,
    key_pem: &str,
    routes: Routes,
) -> Result<SocketAddr, KitError> {
    serve_until(addr, cert_pem, key_pem, routes, std::future::pending()).await
}

/// Like [`serve`], until `shutdown` completes: then the listener closes, so new calls are
/// refused (the API server applies the webhook's `failurePolicy`); calls already accepted
/// are answered.
pub async fn serve_until(
    addr: SocketAddr,
    cert_pem: &str,
    key_pem: &str,
    routes: Routes,
    shutdown: impl std::future::Future<Output = ()> + Send + 'static,
) -> Result<SocketAddr, KitError> {
    let acceptor = TlsAcceptor::from(tls(cert_pem, key_pem)?);
    let listener = TcpListener::bind(addr).await?;
    let bound = listener.local_addr()?;
    let routes = Arc::new(routes);
    tokio::spawn(async move {
        tokio::pin!(shutdown);
        loop {
            let tcp = tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => match accepted {
                    Ok((tcp, _)) => tcp,
                    Err(_) => continue,
                },
            };
            let acceptor = acceptor.clone();
            let routes = routes.clone();
            tokio::spawn(async move {
                let Ok(stream) = acceptor.accept(tcp).await else {
                    return;
                };
                let svc = hyper::service::service_fn(move |req: Request<hyper::body::Incoming>| {
                    let routes = routes.clone();
                    async move {
                        let path = req.uri().path().to_string();
                        let (code, body) = match Limited::new(req.into_body(), MAX_REVIEW)
                            .collect()
                            .await
                        {
                            Ok(b) => review(&routes, &path, &b.to_bytes()),
                            Err(e) => (StatusCode::PAYLOAD_TOO_LARGE, e.to_string().into_bytes()),
                        };
                        let mut r = Response::new(Full::new(Bytes::from(body)));
                        *r.status_mut() = code;
                        r.headers_mut().insert(
                            header::CONTENT_TYPE,
                            http::HeaderValue::from_static("application/json"),
                        );
                        Ok::<_, std::convert::Infallible>(r)
                    }
                });
                let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                    .serve_connection(TokioIo::new(stream), svc)
                    .await;
            });
        }
    });
    Ok(bound)
}

/// A serving certificate for 127.0.0.1/localhost issued from the instance CA in `tls_dir`
/// (`ca.crt`, `ca.key`, created by `rdd svc`; controllers run as the same user). Returns
/// (certificate, key, CA) in PEM. No port or certificate is fixed, so instances never collide.
pub fn issue_serving_cert(
    tls_dir: &std::path::Path,
    common_name: &str,
) -> Result<(String, String, String), KitError> {
    let read = |f: &str| {
        std::fs::read_to_string(tls_dir.join(f))
            .map_err(|e| KitError::Config(format!("reading {}: {e}", tls_dir.join(f).display())))
    };
    let ca = read("ca.crt")?;
    let ca_key = read("ca.key")?;
    let cert_err = |e: rcgen::Error| KitError::Config(format!("webhook certificate: {e}"));
    let issuer =
        rcgen::Issuer::from_ca_cert_pem(&ca, rcgen::KeyPair::from_pem(&ca_key).map_err(cert_err)?)
            .map_err(cert_err)?;
    let key = rcgen::KeyPair::generate().map_err(cert_err)?;
    let mut p = rcgen::CertificateParams::new(vec!["localhost".to_string()]).map_err(cert_err)?;
    p.subject_alt_names.push(rcgen::SanType::IpAddress(
        std::net::Ipv4Addr::LOCALHOST.into(),
    ));
    p.distinguished_name
        .push(rcgen::DnType::CommonName, common_name);
    p.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
    let cert = p.signed_by(&key, &issuer).map_err(cert_err)?;
    Ok((cert.pem(), key.serialize_pem(), ca))
}

/// One webhook configuration template of `deploy/webhooks/` (with `${URL}` and `${CA_BUNDLE}`).
pub struct Registration<'a> {
    pub mutating: bool,
    pub name: &'a str,
    pub template: &'a str,
}

/// Apply the configurations with this process's URL and CA bundle (server-side apply under
/// `field_manager`), so the API server calls the process wherever it listens today.
pub async fn register(
    client: &kube::Client,
    field_manager: &str,
    url: &str,
    ca_pem: &str,
    configs: &[Registration<'_>],
) -> Result<(), KitError> {
    use base64::Engine;
    use k8s_openapi::api::admissionregistration::v1::{
        MutatingWebhookConfiguration, ValidatingWebhookConfiguration,
    };
    use kube::api::{Api, Patch, PatchParams};
    let bundle = base64::engine::general_purpose::STANDARD.encode(ca_pem);
    let pp = PatchParams::apply(field_manager).force();
    for c in configs {
        let text = c
            .template
            .replace("${URL}", url)
            .replace("${CA_BUNDLE}", &bundle);
        let body: serde_json::Value = serde_saphyr::from_str(&text)
            .map_err(|e| KitError::Config(format!("webhook configuration {}: {e}", c.name)))?;
        if c.mutating {
            let api: Api<MutatingWebhookConfiguration> = Api::all(client.clone());
            api.patch(c.name, &pp, &Patch::Apply(body)).await?;
        } else {
            let api: Api<ValidatingWebhookConfiguration> = Api::all(client.clone());
            api.patch(c.name, &pp, &Patch::Apply(body)).await?;
        }
    }
    Ok(())
}

/// Where and how a controller serves its admission webhooks.
pub struct Webhooks<'a> {
    /// Listen address (a free loopback port by default, never a fixed one).
    pub addr: SocketAddr,
    /// The instance CA the serving certificate is issued from.
    pub tls_dir: &'a std::path::Path,
    pub common_name: &'a str,
    /// Apply `configs` with this process's URL once it listens.
    pub register: bool,
    pub configs: &'a [Registration<'a>],
}

/// Issue the serving certificate, serve `routes` and register the configurations: the whole
/// start-up of a controller's webhooks. Returns the bound address.
pub async fn start(
    client: &kube::Client,
    field_manager: &str,
    w: Webhooks<'_>,
    routes: Routes,
) -> Result<SocketAddr, KitError> {
    let (cert, key, ca) = issue_serving_cert(w.tls_dir, w.common_name)?;
    let bound = serve(w.addr, &cert, &key, routes).await?;
    tracing::info!(%bound, name = w.common_name, "admission webhooks");
    if w.register {
        register(
            client,
            field_manager,
            &format!("https://{bound}"),
            &ca,
            w.configs,
        )
        .await?;
    }
    Ok(bound)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn routes() -> Routes {
        Routes::default().handle("/v", |req| {
            let labels = req
                .object
                .as_ref()
                .and_then(|o| o.metadata.labels.clone())
                .unwrap_or_default();
            if labels.get("deny").map(String::as_str) == Some("true") {
                AdmissionResponse::from(req).deny("denied by label")
            } else {
                AdmissionResponse::from(req)
            }
        })
    }

    fn review_body(labels: serde_json::Value) -> Vec<u8> {
        serde_json::to_vec(&json!({
            "apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview",
            "request": {"uid": "u1", "kind": {"group": "", "version": "v1", "kind": "ConfigMap"},
                "resource": {"group": "", "version": "v1", "resource": "configmaps"},
                "operation": "CREATE", "userInfo": {"username": "x"}, "dryRun": false,
                "object": {"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": "c", "labels": labels}}}
        }))
        .unwrap()
    }

    #[test]
    fn denials_are_forbidden_unless_the_handler_chose_a_code() {
        let denied = denial_status(serde_json::json!({
            "response": {"uid": "u", "allowed": false, "status": {"message": "no"}}
        }));
        assert_eq!(denied["response"]["status"]["code"], 403);
        assert_eq!(denied["response"]["status"]["reason"], "Forbidden");
        let chosen = denial_status(serde_json::json!({
            "response": {"allowed": false, "status": {"code": 422, "reason": "Invalid"}}
        }));
        assert_eq!(chosen["response"]["status"]["code"], 422);
        let allowed = denial_status(serde_json::json!({"response": {"allowed": true}}));
        assert!(allowed["response"].get("status").is_none());
    }

    #[test]
    fn allows_denies_and_rejects_garbage() {
        let (code, body) = review(&routes(), "/v", &review_body(json!({})));
        assert_eq!(code, StatusCode::OK);
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["response"]["uid"], "u1");
        assert_eq!(v["response"]["allowed"], true);
        let (_, body) = review(&routes(), "/v", &review_body(json!({"deny": "true"})));
        let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert_eq!(v["response"]["allowed"], false);
        assert_eq!(v["response"]["status"]["message"], "denied by label");
        assert_eq!(review(&routes(), "/v", b"{").0, StatusCode::BAD_REQUEST);
        let fixed = base64_patch(json!({"response": {"patch": [91, 93]}}));
        assert_eq!(
            fixed["response"]["patch"], "W10=",
            "a patch travels as base64, as the API server expects"
        );
        assert_eq!(review(&routes(), "/nope", b"{}").0, StatusCode::NOT_FOUND);
    }
}
