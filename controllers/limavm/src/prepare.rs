//! Image preparation, the "prepare" operation of lima.md §12.1 (controllers.md §3.2 step 14):
//! Lima's command line has no prepare command, so rdd makes sure `<dir>/image` exists before
//! `Created=True` is written, and `limactl start` then skips its own download.
//!
//! | observed                                                   | action                          |
//! |------------------------------------------------------------|---------------------------------|
//! | `<dir>/image` or `<dir>/disk` exists                        | nothing (already prepared)      |
//! | no image entry for the instance architecture               | nothing (Lima reports it)       |
//! | entry compressed other than xz (`.gz`, `.bz2`, `.zst`)     | nothing (Lima decompresses)     |
//! | otherwise, entries of the architecture in template order   | fetch the first that succeeds   |
//!
//! Fetching one entry: `file://` URLs and plain paths are read in place; `http(s)` downloads go
//! through a cache laid out like Lima's (`<cache>/by-url-sha256/<sha256(url)>/data`), reused
//! only when the template pins a digest that the cache recorded — a URL without a digest may
//! change, so it is downloaded again. The digest is checked while streaming. `.xz` data is
//! decompressed in-process (no `xz` program needed, lima.md §3.3), anything else is linked or
//! copied; either way into a temporary file renamed to `image`, so a crash never leaves a
//! partial image. WSL2 instances also get `basedisk` hard-linked to `image`. Every error names
//! the image location, which is what users (and the §9.9 BATS test) look for.

use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Empty};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use sha2::Digest as _;

/// How long a download may go without receiving a byte.
const STALL: Duration = Duration::from_secs(60);
const MAX_REDIRECTS: usize = 10;

#[derive(Debug, thiserror::Error)]
pub enum PrepareError {
    #[error("failed to parse template: {0}")]
    Template(String),
    #[error("failed to download {url}: {reason}")]
    Download { url: String, reason: String },
    #[error("image {url}: {algo} digest mismatch: expected {expected}, got {actual}")]
    Digest {
        url: String,
        algo: &'static str,
        expected: String,
        actual: String,
    },
    #[error("image {url}: unsupported digest {digest:?} (want sha256:… or sha512:…)")]
    DigestSyntax { url: String, digest: String },
    #[error("failed to decompress {url}: {reason}")]
    Decompress { url: String, reason: String },
    #[error("preparing the image of {dir}: {source}")]
    Io {
        dir: PathBuf,
        source: std::io::Error,
    },
    /// Every entry for the architecture failed; each reason names its location.
    #[error("{}", .0.iter().map(|e| e.to_string()).collect::<Vec<_>>().join("; "))]
    All(Vec<PrepareError>),
}

#[derive(Debug, Default, Deserialize)]
struct Template {
    #[serde(default)]
    arch: Option<String>,
    #[serde(default, rename = "vmType")]
    vm_type: Option<String>,
    #[serde(default)]
    images: Vec<ImageEntry>,
}

#[derive(Clone, Debug, Default, Deserialize, PartialEq, Eq)]
pub struct ImageEntry {
    #[serde(default)]
    pub location: String,
    #[serde(default)]
    pub arch: Option<String>,
    #[serde(default)]
    pub digest: Option<String>,
}

/// What preparing an instance takes.
#[derive(Debug, PartialEq, Eq)]
pub enum Plan {
    Ready,
    LeaveToLima(String),
    Fetch {
        entries: Vec<ImageEntry>,
        wsl2: bool,
    },
}

/// Lima's name for the architecture this process runs on.
pub fn host_arch() -> &'static str {
    match std::env::consts::ARCH {
        "aarch64" => "aarch64",
        "arm" => "armv7l",
        "riscv64" => "riscv64",
        "s390x" => "s390x",
        "powerpc64" => "ppc64le",
        _ => "x86_64",
    }
}

pub fn plan(template: &str, dir: &Path, host_arch: &str) -> Result<Plan, PrepareError> {
    if dir.join("image").exists() || dir.join("disk").exists() {
        return Ok(Plan::Ready);
    }
    let t: Template =
        serde_saphyr::from_str(template).map_err(|e| PrepareError::Template(e.to_string()))?;
    let arch = t.arch.as_deref().unwrap_or(host_arch);
    // Like Lima's defaults, an entry without `arch` has the instance's.
    let entries: Vec<ImageEntry> = t
        .images
        .into_iter()
        .filter(|e| e.arch.as_deref().unwrap_or(arch) == arch)
        .collect();
    let Some(first) = entries.first() else {
        return Ok(Plan::LeaveToLima(format!(
            "no image for architecture {arch}"
        )));
    };
    let path = location_path(&first.location);
    if [".gz", ".bz2", ".zst"].iter().any(|s| path.ends_with(s)) {
        return Ok(Plan::LeaveToLima(format!(
            "{} is compressed in a format Lima decompresses itself",
            first.location
        )));
    }
    Ok(Plan::Fetch {
        entries,
        wsl2: t.vm_type.as_deref() == Some("wsl2"),
    })
}

/// The location's path, without query or fragment, for the compression check.
fn location_path(location: &str) -> &str {
    location.split(['?', '#']).next().unwrap_or(location)
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Algo {
    Sha256,
    Sha512,
}

impl Algo {
    fn name(self) -> &'static str {
        match self {
            Algo::Sha256 => "sha256",
            Algo::Sha512 => "sha512",
        }
    }
}

fn parse_digest(url: &str, d: &str) -> Result<(Algo, String), PrepareError> {
    let bad = || PrepareError::DigestSyntax {
        url: url.to_string(),
        digest: d.to_string(),
    };
    let (algo, hex) = d.split_once(':').ok_or_else(bad)?;
    let (algo, len) = match algo {
        "sha256" => (Algo::Sha256, 64),
        "sha512" => (Algo::Sha512, 128),
        _ => return Err(bad()),
    };
    if hex.len() != len || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
        return Err(bad());
    }
    Ok((algo, hex.to_ascii_lowercase()))
}

enum Hasher {
    Sha256(sha2::Sha256),
    Sha512(sha2::Sha512),
}

impl Hasher {
    fn new(a: Algo) -> Hasher {
        match a {
            Algo::Sha256 => Hasher::Sha256(sha2::Sha256::new()),
            Algo::Sha512 => Hasher::Sha512(sha2::Sha512::new()),
        }
    }
    fn update(&mut self, b: &[u8]) {
        match self {
            Hasher::Sha256(h) => h.update(b),
            Hasher::Sha512(h) => h.update(b),
        }
    }
    fn hex(self) -> String {
        match self {
            Hasher::Sha256(h) => hex::encode(h.finalize()),
            Hasher::Sha512(h) => hex::encode(h.finalize()),
        }
    }
}

/// Downloads (with Lima's cache layout) and lays out instance images.
pub struct Fetcher {
    cache: PathBuf,
    client: Client<hyper_rustls::HttpsConnector<HttpConnector>, Empty<Bytes>>,
}

impl Fetcher {
    /// A machine without CA certificates still gets a working controller: its `https`
    /// downloads fail with a certificate error naming the URL.
    pub fn new(cache: PathBuf) -> Result<Fetcher, rustls::Error> {
        let mut roots = rustls::RootCertStore::empty();
        let native = rustls_native_certs::load_native_certs();
        for e in &native.errors {
            tracing::warn!(error = %e, "loading the system's CA certificates");
        }
        let (added, _) = roots.add_parsable_certificates(native.certs);
        tracing::debug!(added, "system CA certificates for image downloads");
        let tls = rustls::ClientConfig::builder_with_provider(std::sync::Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()?
        .with_root_certificates(roots)
        .with_no_client_auth();
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(Duration::from_secs(30)));
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        Ok(Fetcher {
            cache,
            client: Client::builder(TokioExecutor::new()).build(https),
        })
    }

    /// Make `<dir>/image` exist per [`plan`]; returns what was done, for the log.
    pub async fn prepare(&self, template: &str, dir: &Path) -> Result<String, PrepareError> {
        let (entries, wsl2) = match plan(template, dir, host_arch())? {
            Plan::Ready => return Ok("image already present".into()),
            Plan::LeaveToLima(why) => return Ok(format!("left to Lima: {why}")),
            Plan::Fetch { entries, wsl2 } => (entries, wsl2),
        };
        let mut errors = vec![];
        for e in &entries {
            match self.install(e, dir).await {
                Ok(()) => {
                    if wsl2 {
                        link_basedisk(dir)?;
                    }
                    return Ok(format!("prepared from {}", e.location));
                }
                Err(err) => {
                    tracing::warn!(location = %e.location, error = %err, "image entry failed");
                    errors.push(err);
                }
            }
        }
        Err(if errors.len() == 1 {
            errors.remove(0)
        } else {
            PrepareError::All(errors)
        })
    }

    async fn install(&self, e: &ImageEntry, dir: &Path) -> Result<(), PrepareError> {
        let url = e.location.clone();
        let digest = e
            .digest
            .as_deref()
            .filter(|d| !d.is_empty())
            .map(|d| parse_digest(&url, d))
            .transpose()?;
        let source = match local_path(&url) {
            Some(p) => {
                if let Some((algo, want)) = &digest {
                    let got = hash_file(&p, *algo).map_err(|err| PrepareError::Download {
                        url: url.clone(),
                        reason: err.to_string(),
                    })?;
                    check(&url, *algo, want, &got)?;
                }
                p
            }
            None => self.download(&url, digest.as_ref()).await?,
        };
        let dir = dir.to_path_buf();
        let xz = location_path(&url).ends_with(".xz");
        tokio::task::spawn_blocking(move || lay_out(&source, &dir, &url, xz))
            .await
            .map_err(|err| PrepareError::Decompress {
                url: e.location.clone(),
                reason: err.to_string(),
            })?
    }

    /// Download into the cache (or reuse a verified cache entry); returns the data file.
    async fn download(
        &self,
        url: &str,
        digest: Option<&(Algo, String)>,
    ) -> Result<PathBuf, PrepareError> {
        let fail = |reason: String| PrepareError::Download {
            url: url.to_string(),
            reason,
        };
        let entry = self
            .cache
            .join("by-url-sha256")
            .join(hex::encode(sha2::Sha256::digest(url.as_bytes())));
        let data = entry.join("data");
        if let Some((algo, want)) = digest {
            let recorded = std::fs::read_to_string(entry.join(format!("{}.digest", algo.name())))
                .ok()
                .map(|s| s.trim().to_string());
            if data.exists() && recorded.as_deref() == Some(&format!("{}:{want}", algo.name())) {
                tracing::debug!(url, "image found in the download cache");
                return Ok(data);
            }
        }
        std::fs::create_dir_all(&entry).map_err(|e| fail(e.to_string()))?;
        let tmp = entry.join(format!("data.tmp.{}", std::process::id()));
        let mut hasher = digest.map(|(a, _)| Hasher::new(*a));
        let result = self.stream_to(url, &tmp, &mut hasher).await;
        if let Err(e) = result {
            let _ = std::fs::remove_file(&tmp);
            return Err(fail(e));
        }
        if let (Some((algo, want)), Some(h)) = (digest, hasher) {
            let got = h.hex();
            if let Err(e) = check(url, *algo, want, &got) {
                let _ = std::fs::remove_file(&tmp);
                return Err(e);
            }
            std::fs::write(
                entry.join(format!("{}.digest", algo.name())),
                format!("{}:{got}", algo.name()),
            )
            .map_err(|e| fail(e.to_string()))?;
        }
        std::fs::write(entry.join("url"), url).map_err(|e| fail(e.to_string()))?;
        std::fs::rename(&tmp, &data).map_err(|e| fail(e.to_string()))?;
        Ok(data)
    }

    async fn stream_to(
        &self,
        url: &str,
        file: &Path,
        hasher: &mut Option<Hasher>,
    ) -> Result<(), String> {
        let mut current = url.to_string();
        for _ in 0..=MAX_REDIRECTS {
            let uri: http::Uri = current.parse().map_err(|e| format!("invalid URL: {e}"))?;
            let req = http::Request::get(uri.clone())
                .header(http::header::USER_AGENT, "rdd-limavm-controller")
                .body(Empty::<Bytes>::new())
                .map_err(|e| e.to_string())?;
            let resp = tokio::time::timeout(STALL, self.client.request(req))
                .await
                .map_err(|_| "no response within 60 s".to_string())?
                .map_err(|e| error_chain(&e))?;
            let status = resp.status();
            if status.is_redirection() {
                let next = resp
                    .headers()
                    .get(http::header::LOCATION)
                    .and_then(|v| v.to_str().ok())
                    .ok_or_else(|| format!("HTTP {status} without a Location"))?;
                current = url::Url::parse(&current)
                    .and_then(|base| base.join(next))
                    .map_err(|e| format!("bad redirect {next:?}: {e}"))?
                    .to_string();
                continue;
            }
            if !status.is_success() {
                return Err(format!("HTTP {status}"));
            }
            let mut out = std::fs::File::create(file).map_err(|e| e.to_string())?;
            let mut body = resp.into_body();
            loop {
                let frame = tokio::time::timeout(STALL, body.frame())
                    .await
                    .map_err(|_| "download stalled for 60 s".to_string())?;
                let Some(frame) = frame else { break };
                let frame = frame.map_err(|e| error_chain(&e))?;
                if let Some(chunk) = frame.data_ref() {
                    if let Some(h) = hasher.as_mut() {
                        h.update(chunk);
                    }
                    out.write_all(chunk).map_err(|e| e.to_string())?;
                }
            }
            out.sync_all().map_err(|e| e.to_string())?;
            return Ok(());
        }
        Err(format!("more than {MAX_REDIRECTS} redirects"))
    }
}

/// hyper's errors say little at the top ("client error (Connect)"); the cause says why.
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut s = e.to_string();
    let mut cur = e.source();
    while let Some(c) = cur {
        s.push_str(": ");
        s.push_str(&c.to_string());
        cur = c.source();
    }
    s
}

fn check(url: &str, algo: Algo, want: &str, got: &str) -> Result<(), PrepareError> {
    if want == got {
        Ok(())
    } else {
        Err(PrepareError::Digest {
            url: url.to_string(),
            algo: algo.name(),
            expected: want.to_string(),
            actual: got.to_string(),
        })
    }
}

/// `file:///x` and `/x` (Lima accepts both) name a local file.
fn local_path(location: &str) -> Option<PathBuf> {
    if let Some(rest) = location.strip_prefix("file://") {
        return Some(PathBuf::from(rest));
    }
    if location.contains("://") {
        return None;
    }
    Some(PathBuf::from(location))
}

fn hash_file(p: &Path, algo: Algo) -> std::io::Result<String> {
    let mut f = std::fs::File::open(p)?;
    let mut h = Hasher::new(algo);
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = f.read(&mut buf)?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(h.hex())
}

/// `source` → `<dir>/image` through a temporary file, decompressing xz.
fn lay_out(source: &Path, dir: &Path, url: &str, xz: bool) -> Result<(), PrepareError> {
    let io = |e: std::io::Error| PrepareError::Io {
        dir: dir.to_path_buf(),
        source: e,
    };
    let image = dir.join("image");
    if image.exists() {
        return Ok(());
    }
    let tmp = dir.join("image.tmp");
    let _ = std::fs::remove_file(&tmp);
    let input = std::fs::File::open(source).map_err(|e| PrepareError::Download {
        url: url.to_string(),
        reason: e.to_string(),
    })?;
    if xz {
        let mut reader = lzma_rust2::XzReader::new(std::io::BufReader::new(input), true);
        let mut out = std::fs::File::create(&tmp).map_err(io)?;
        let copied = std::io::copy(&mut reader, &mut out);
        if let Err(e) = copied {
            let _ = std::fs::remove_file(&tmp);
            return Err(PrepareError::Decompress {
                url: url.to_string(),
                reason: e.to_string(),
            });
        }
        out.sync_all().map_err(io)?;
    } else if std::fs::hard_link(source, &tmp).is_err() {
        drop(input);
        std::fs::copy(source, &tmp).map_err(io)?;
    }
    std::fs::rename(&tmp, &image).map_err(io)
}

fn link_basedisk(dir: &Path) -> Result<(), PrepareError> {
    let base = dir.join("basedisk");
    if base.exists() {
        return Ok(());
    }
    std::fs::hard_link(dir.join("image"), &base).map_err(|e| PrepareError::Io {
        dir: dir.to_path_buf(),
        source: e,
    })
}

/// Lima's download cache: `$XDG_CACHE_HOME/lima/download`, else `~/.cache/lima/download`.
pub fn default_cache() -> PathBuf {
    let base = std::env::var_os("XDG_CACHE_HOME")
        .filter(|v| !v.is_empty())
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("lima").join("download")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entries(p: Plan) -> Vec<String> {
        match p {
            Plan::Fetch { entries, .. } => entries.into_iter().map(|e| e.location).collect(),
            other => panic!("expected Fetch, got {other:?}"),
        }
    }

    #[test]
    fn plan_picks_the_entries_of_the_architecture_in_order() {
        let d = tempfile::tempdir().unwrap();
        let t = "images:\n- location: a.xz\n  arch: aarch64\n- location: b.xz\n  arch: x86_64\n- location: c.raw\n";
        assert_eq!(
            entries(plan(t, d.path(), "x86_64").unwrap()),
            ["b.xz", "c.raw"]
        );
        assert_eq!(
            entries(plan(t, d.path(), "aarch64").unwrap()),
            ["a.xz", "c.raw"]
        );
        // The template's own `arch` wins over the host's.
        let t2 = format!("arch: aarch64\n{t}");
        assert_eq!(
            entries(plan(&t2, d.path(), "x86_64").unwrap()),
            ["a.xz", "c.raw"]
        );
    }

    #[test]
    fn plan_is_ready_when_image_or_disk_exists() {
        let t = "images:\n- location: a.xz\n";
        for f in ["image", "disk"] {
            let d = tempfile::tempdir().unwrap();
            std::fs::write(d.path().join(f), b"x").unwrap();
            assert_eq!(plan(t, d.path(), "x86_64").unwrap(), Plan::Ready);
        }
    }

    #[test]
    fn plan_leaves_other_compression_and_missing_arch_to_lima() {
        let d = tempfile::tempdir().unwrap();
        for t in [
            "images:\n- location: https://h/x.raw.gz\n",
            "images:\n- location: https://h/x.zst?x=1\n",
            "images:\n- location: x.xz\n  arch: riscv64\n",
            "cpus: 2\n",
        ] {
            assert!(
                matches!(plan(t, d.path(), "x86_64").unwrap(), Plan::LeaveToLima(_)),
                "{t}"
            );
        }
    }

    #[test]
    fn plan_reports_wsl2_and_rejects_unparsable_templates() {
        let d = tempfile::tempdir().unwrap();
        let t = "vmType: wsl2\nimages:\n- location: x.tar.xz\n";
        assert!(matches!(
            plan(t, d.path(), "x86_64").unwrap(),
            Plan::Fetch { wsl2: true, .. }
        ));
        assert!(matches!(
            plan("images: [", d.path(), "x86_64"),
            Err(PrepareError::Template(_))
        ));
    }

    #[test]
    fn digests_are_parsed_strictly() {
        let h = "a".repeat(64);
        assert_eq!(
            parse_digest("u", &format!("sha256:{h}")).unwrap(),
            (Algo::Sha256, h.clone())
        );
        assert!(parse_digest("u", &format!("sha512:{}", "B".repeat(128))).is_ok());
        for bad in [
            "sha256",
            &format!("md5:{h}"),
            "sha256:abc",
            &format!("sha256:{}", "z".repeat(64)),
        ] {
            assert!(parse_digest("u", bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn local_paths_and_urls() {
        assert_eq!(local_path("file:///a/b.xz"), Some(PathBuf::from("/a/b.xz")));
        assert_eq!(local_path("/a/b.xz"), Some(PathBuf::from("/a/b.xz")));
        assert_eq!(local_path("https://h/b.xz"), None);
    }

    fn xz_fixture() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../../testkit/fixtures/images/distro.v0.2.6.amd64.raw.xz")
    }

    #[test]
    fn lay_out_decompresses_xz_and_links_plain_files() {
        let d = tempfile::tempdir().unwrap();
        lay_out(&xz_fixture(), d.path(), "file:///x.raw.xz", true).unwrap();
        let text = std::fs::read_to_string(d.path().join("image")).unwrap();
        assert!(text.starts_with("rdd test disk image (amd64)"), "{text}");
        assert!(!d.path().join("image.tmp").exists());

        let d2 = tempfile::tempdir().unwrap();
        let src = d2.path().join("plain.iso");
        std::fs::write(&src, b"iso").unwrap();
        let inst = d2.path().join("inst");
        std::fs::create_dir(&inst).unwrap();
        lay_out(&src, &inst, "/plain.iso", false).unwrap();
        assert_eq!(std::fs::read(inst.join("image")).unwrap(), b"iso");
    }

    #[test]
    fn corrupt_xz_fails_naming_the_location_and_leaves_no_image() {
        let d = tempfile::tempdir().unwrap();
        let src = d.path().join("bad.xz");
        std::fs::write(&src, b"not xz at all").unwrap();
        let inst = d.path().join("inst");
        std::fs::create_dir(&inst).unwrap();
        let e = lay_out(&src, &inst, "https://mirror.example/bad.xz", true).unwrap_err();
        assert!(
            e.to_string().contains("https://mirror.example/bad.xz"),
            "{e}"
        );
        assert!(!inst.join("image").exists() && !inst.join("image.tmp").exists());
    }

    /// A local HTTP server: `/img.raw.xz` serves the fixture, `/moved` redirects to it,
    /// everything else is 404; counts the requests for the fixture.
    async fn server() -> (String, std::sync::Arc<std::sync::atomic::AtomicUsize>) {
        use hyper::service::service_fn;
        use std::sync::atomic::{AtomicUsize, Ordering};
        let hits = std::sync::Arc::new(AtomicUsize::new(0));
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let body = Bytes::from(std::fs::read(xz_fixture()).unwrap());
        let h = hits.clone();
        tokio::spawn(async move {
            loop {
                let (sock, _) = listener.accept().await.unwrap();
                let (body, h) = (body.clone(), h.clone());
                tokio::spawn(async move {
                    let svc = service_fn(move |req: http::Request<hyper::body::Incoming>| {
                        let (body, h) = (body.clone(), h.clone());
                        async move {
                            let resp = match req.uri().path() {
                                "/img.raw.xz" => {
                                    h.fetch_add(1, Ordering::SeqCst);
                                    http::Response::new(http_body_util::Full::new(body))
                                }
                                "/moved" => http::Response::builder()
                                    .status(302)
                                    .header("location", "/img.raw.xz")
                                    .body(http_body_util::Full::new(Bytes::new()))
                                    .unwrap(),
                                _ => http::Response::builder()
                                    .status(404)
                                    .body(http_body_util::Full::new(Bytes::new()))
                                    .unwrap(),
                            };
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(hyper_util::rt::TokioIo::new(sock), svc)
                        .await;
                });
            }
        });
        (base, hits)
    }

    fn fixture_digest() -> String {
        format!("sha256:{}", hash_file(&xz_fixture(), Algo::Sha256).unwrap())
    }

    fn template(location: &str, digest: Option<&str>) -> String {
        let d = digest
            .map(|d| format!("  digest: {d}\n"))
            .unwrap_or_default();
        format!(
            "images:\n- location: \"{location}\"\n  arch: {}\n{d}",
            host_arch()
        )
    }

    #[tokio::test]
    async fn download_verifies_the_digest_and_reuses_the_cache() {
        let (base, hits) = server().await;
        let cache = tempfile::tempdir().unwrap();
        let f = Fetcher::new(cache.path().to_path_buf()).unwrap();
        let t = template(&format!("{base}/img.raw.xz"), Some(&fixture_digest()));
        for _ in 0..2 {
            let inst = tempfile::tempdir().unwrap();
            let what = f.prepare(&t, inst.path()).await.unwrap();
            assert!(what.contains("img.raw.xz"), "{what}");
            let text = std::fs::read_to_string(inst.path().join("image")).unwrap();
            assert!(text.starts_with("rdd test disk image (amd64)"));
        }
        // The second instance was served from the cache.
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 1);

        // Without a digest the URL may have changed: downloaded again.
        let inst = tempfile::tempdir().unwrap();
        f.prepare(&template(&format!("{base}/moved"), None), inst.path())
            .await
            .unwrap();
        assert_eq!(hits.load(std::sync::atomic::Ordering::SeqCst), 2);
    }

    #[tokio::test]
    async fn a_wrong_digest_or_a_missing_file_fails_naming_the_url() {
        let (base, _) = server().await;
        let cache = tempfile::tempdir().unwrap();
        let f = Fetcher::new(cache.path().to_path_buf()).unwrap();
        let wrong = format!("sha256:{}", "0".repeat(64));
        let inst = tempfile::tempdir().unwrap();
        let url = format!("{base}/img.raw.xz");
        let e = f
            .prepare(&template(&url, Some(&wrong)), inst.path())
            .await
            .unwrap_err();
        assert!(
            matches!(e, PrepareError::Digest { .. }) && e.to_string().contains(&url),
            "{e}"
        );
        assert!(!inst.path().join("image").exists());
        // A failed verification leaves nothing in the cache that a later run could trust.
        let e = f
            .prepare(&template(&url, Some(&wrong)), inst.path())
            .await
            .unwrap_err();
        assert!(matches!(e, PrepareError::Digest { .. }), "{e}");

        let missing = format!("{base}/nope.raw.xz");
        let e = f
            .prepare(&template(&missing, None), inst.path())
            .await
            .unwrap_err();
        assert!(
            e.to_string().contains(&missing) && e.to_string().contains("404"),
            "{e}"
        );

        let e = f
            .prepare(
                &template("https://invalid.example.test/nonexistent.iso", None),
                inst.path(),
            )
            .await
            .unwrap_err();
        assert!(e.to_string().contains("invalid.example.test"), "{e}");
    }

    #[tokio::test]
    async fn later_entries_are_tried_when_the_first_fails() {
        let (base, _) = server().await;
        let cache = tempfile::tempdir().unwrap();
        let f = Fetcher::new(cache.path().to_path_buf()).unwrap();
        let a = host_arch();
        let t = format!(
            "images:\n- location: {base}/gone.raw.xz\n  arch: {a}\n- location: {base}/img.raw.xz\n  arch: {a}\n"
        );
        let inst = tempfile::tempdir().unwrap();
        let what = f.prepare(&t, inst.path()).await.unwrap();
        assert!(what.ends_with("/img.raw.xz"), "{what}");
        assert!(inst.path().join("image").exists());
    }
}
