//! The request pipeline without TLS or sockets: a bootstrapped server state over a storage
//! directory, answering requests as the cluster admin. The fuzz targets (`fuzz/`) drive it with
//! arbitrary bodies, where a network round trip per input would cost more than the request.
//!
//! What it skips is what an input cannot reach through a socket either: TLS, authentication
//! and authorization run before the body is read. Background loops (garbage collection,
//! namespace finalization, compaction) are not started.

use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;
use http::{HeaderMap, HeaderValue, Method, header};
use http_body_util::BodyExt;

use crate::auth::UserInfo;
use crate::request::{Ctx, Query};
use crate::server::{Config, ServeError, State, handle, open_state};

/// A server state answering requests in process.
pub struct Offline {
    state: Arc<State>,
}

/// Status and body of an answered request.
#[derive(Debug)]
pub struct Answer {
    pub status: u16,
    pub body: Bytes,
}

impl Offline {
    /// Open (or create) the storage in `dir` and bootstrap it as `rdd svc serve` does.
    pub async fn open(dir: &Path) -> Result<Offline, ServeError> {
        let state = open_state(Config::new(dir.to_path_buf(), 0))?;
        crate::lifecycle::bootstrap(&state)
            .await
            .map_err(|e| ServeError::Config(format!("bootstrap: {e}")))?;
        state.mark_ready();
        Ok(Offline { state })
    }

    /// Answer one request as `system:masters`. `path_and_query` is what follows the host in a
    /// URL. Watches are refused here: their body never ends.
    pub async fn request(
        &self,
        method: Method,
        path_and_query: &str,
        content_type: &str,
        body: Vec<u8>,
    ) -> Answer {
        let (path, query) = match path_and_query.split_once('?') {
            Some((p, q)) => (p, Some(q)),
            None => (path_and_query, None),
        };
        let query = Query::parse(query);
        if query.flag("watch").unwrap_or(false) || path.contains("/watch/") {
            return Answer {
                status: 400,
                body: Bytes::from_static(b"watch is not served offline"),
            };
        }
        let mut headers = HeaderMap::new();
        if let Ok(v) = HeaderValue::from_str(content_type) {
            headers.insert(header::CONTENT_TYPE, v);
        }
        headers.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        let mut ctx = Ctx {
            method,
            path: path.to_string(),
            query,
            headers,
            body: Bytes::from(body),
            user: UserInfo {
                username: "offline-admin".into(),
                uid: String::new(),
                groups: vec!["system:masters".into(), "system:authenticated".into()],
            },
            warnings: Vec::new(),
        };
        let resp = handle(&self.state, &mut ctx).await;
        let status = resp.status().as_u16();
        let body = match resp.into_body().collect().await {
            Ok(b) => b.to_bytes(),
            Err(never) => match never {},
        };
        Answer { status, body }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn answers_like_the_server_and_turns_bad_bodies_into_4xx_statuses() {
        let dir = tempfile::tempdir().unwrap();
        let api = Offline::open(dir.path()).await.unwrap();
        let created = api
            .request(
                Method::POST,
                "/api/v1/namespaces",
                "application/json",
                br#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"fz"}}"#.to_vec(),
            )
            .await;
        assert_eq!(created.status, 201, "{:?}", created.body);
        let got = api
            .request(Method::GET, "/api/v1/namespaces/fz", "", vec![])
            .await;
        assert_eq!(got.status, 200);
        let bad = api
            .request(
                Method::POST,
                "/api/v1/namespaces/fz/configmaps",
                "application/json",
                b"{not json".to_vec(),
            )
            .await;
        assert_eq!(bad.status, 400);
        let status: serde_json::Value = serde_json::from_slice(&bad.body).unwrap();
        assert_eq!(status["kind"], "Status");
        assert_eq!(status["reason"], "BadRequest");
        // Found by the api_request fuzz target: built-in fields that the Go types decode into
        // structs or maps panicked in defaulting when they held anything else.
        for (path, body) in [
            (
                "/api/v1/namespaces",
                r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"b1"},"spec":"x"}"#,
            ),
            (
                "/api/v1/namespaces",
                r#"{"apiVersion":"v1","kind":"Namespace","metadata":{"name":"b2"},"spec":[1]}"#,
            ),
            (
                "/api/v1/namespaces/fz/secrets",
                r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"b3"},"data":5,"stringData":{"a":"b"}}"#,
            ),
            (
                "/api/v1/namespaces/fz/secrets",
                r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"b4"},"stringData":[1]}"#,
            ),
            (
                "/api/v1/namespaces/fz/secrets",
                r#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"b5"},"stringData":{"a":1}}"#,
            ),
        ] {
            let a = api
                .request(
                    Method::POST,
                    path,
                    "application/json",
                    body.as_bytes().to_vec(),
                )
                .await;
            assert_eq!(a.status, 400, "{body}: {:?}", a.body);
            let status: serde_json::Value = serde_json::from_slice(&a.body).unwrap();
            assert_eq!(status["reason"], "BadRequest", "{status}");
            assert!(
                status["message"]
                    .as_str()
                    .unwrap()
                    .contains("cannot unmarshal"),
                "{status}"
            );
        }
        let secret = api
            .request(
                Method::POST,
                "/api/v1/namespaces/fz/secrets",
                "application/json",
                br#"{"apiVersion":"v1","kind":"Secret","metadata":{"name":"ok"},"data":{"x":"eA=="},"stringData":{"y":"y"}}"#.to_vec(),
            )
            .await;
        assert_eq!(secret.status, 201, "{:?}", secret.body);
        let secret: serde_json::Value = serde_json::from_slice(&secret.body).unwrap();
        assert_eq!(
            secret["data"],
            serde_json::json!({"x": "eA==", "y": "eQ=="})
        );
        assert!(secret.get("stringData").is_none());

        let watch = api
            .request(Method::GET, "/api/v1/configmaps?watch=true", "", vec![])
            .await;
        assert_eq!(watch.status, 400);
    }
}
