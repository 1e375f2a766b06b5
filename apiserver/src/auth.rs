//! Authentication: bearer tokens (stored SHA-256-hashed, compared in constant time) and client
//! certificates signed by the instance CA.
//!
//! Tokens live in `<dir>/tls/tokens.json`. The server re-reads the file when it changes (checked
//! every second and whenever an unknown token is presented), so tokens issued with
//! [`issue`] (`rdd svc token create`) work at once and revoked ones stop within a second.

use std::fs;
use std::os::unix::fs::MetadataExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::RwLock;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

pub const SERVICE_ACCOUNT_PREFIX: &str = "system:serviceaccount:";

#[derive(Clone, Debug, PartialEq, Eq, Serialize)]
pub struct UserInfo {
    pub username: String,
    pub uid: String,
    pub groups: Vec<String>,
}

impl UserInfo {
    pub fn is_master(&self) -> bool {
        self.groups.iter().any(|g| g == "system:masters")
    }
}

/// The user name of a ServiceAccount, as upstream's token authenticator names it.
pub fn service_account_user(namespace: &str, name: &str) -> String {
    format!("{SERVICE_ACCOUNT_PREFIX}{namespace}:{name}")
}

/// The groups every ServiceAccount user belongs to (besides `system:authenticated`).
pub fn service_account_groups(username: &str) -> Vec<String> {
    match username
        .strip_prefix(SERVICE_ACCOUNT_PREFIX)
        .and_then(|r| r.split_once(':'))
    {
        Some((ns, name)) if !ns.is_empty() && !name.is_empty() => vec![
            "system:serviceaccounts".into(),
            format!("system:serviceaccounts:{ns}"),
        ],
        _ => Vec::new(),
    }
}

#[derive(Debug, thiserror::Error)]
pub enum AuthError {
    #[error("{path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {message}")]
    Invalid { path: PathBuf, message: String },
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> AuthError + '_ {
    move |source| AuthError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// One line of `tokens.json`: the token's SHA-256 (hex) and who it is.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TokenEntry {
    pub sha256: String,
    pub user: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub uid: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

/// What identifies a version of the file: a rewrite by rename changes the inode, an
/// in-place edit the size or modification time.
type Stamp = (u64, u64, i64, i64);

fn stamp(path: &Path) -> Option<Stamp> {
    let m = fs::metadata(path).ok()?;
    Some((m.ino(), m.len(), m.mtime(), m.mtime_nsec()))
}

#[derive(Debug, Default)]
struct Loaded {
    entries: Vec<([u8; 32], UserInfo)>,
    stamp: Option<Stamp>,
}

fn read_entries(path: &Path) -> Result<Vec<TokenEntry>, AuthError> {
    match fs::read(path) {
        Ok(d) if d.iter().all(u8::is_ascii_whitespace) => Ok(Vec::new()),
        Ok(d) => serde_json::from_slice(&d).map_err(|e| AuthError::Invalid {
            path: path.to_path_buf(),
            message: e.to_string(),
        }),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(Vec::new()),
        Err(e) => Err(io_err(path)(e)),
    }
}

fn load(path: &Path) -> Result<Loaded, AuthError> {
    let before = stamp(path);
    let mut entries = Vec::new();
    for t in read_entries(path)? {
        let invalid = |message: &str| AuthError::Invalid {
            path: path.to_path_buf(),
            message: message.to_string(),
        };
        let bytes = hex::decode(&t.sha256).map_err(|e| invalid(&e.to_string()))?;
        let hash: [u8; 32] = bytes
            .try_into()
            .map_err(|_| invalid("sha256 must be 32 bytes"))?;
        let mut groups = t.groups;
        for g in service_account_groups(&t.user) {
            if !groups.contains(&g) {
                groups.push(g);
            }
        }
        entries.push((
            hash,
            UserInfo {
                username: t.user,
                uid: t.uid,
                groups,
            },
        ));
    }
    Ok(Loaded {
        entries,
        stamp: before,
    })
}

#[derive(Debug)]
pub struct Tokens {
    path: PathBuf,
    loaded: RwLock<Loaded>,
}

impl Tokens {
    /// Read the token file; a malformed file is an error at start-up (later, while serving,
    /// a malformed rewrite is logged and the previous tokens stay in force).
    pub fn load(path: &Path) -> Result<Tokens, AuthError> {
        Ok(Tokens {
            path: path.to_path_buf(),
            loaded: RwLock::new(load(path)?),
        })
    }

    /// Re-read the file if it changed since it was last read. Returns whether it did.
    pub fn refresh(&self) -> bool {
        let now = stamp(&self.path);
        let known = match self.loaded.read() {
            Ok(l) => l.stamp,
            Err(p) => p.into_inner().stamp,
        };
        if now == known {
            return false;
        }
        match load(&self.path) {
            Ok(l) => {
                match self.loaded.write() {
                    Ok(mut w) => *w = l,
                    Err(p) => *p.into_inner() = l,
                }
                true
            }
            Err(e) => {
                tracing::warn!(error = %e, "token file not reloaded");
                false
            }
        }
    }

    fn find(&self, hash: &[u8; 32]) -> Option<UserInfo> {
        let loaded = match self.loaded.read() {
            Ok(l) => l,
            Err(p) => p.into_inner(),
        };
        let mut found = None;
        // Look at every entry so timing does not reveal which one matched.
        for (e, u) in &loaded.entries {
            if constant_eq(e, hash) {
                found = Some(u.clone());
            }
        }
        found
    }

    pub fn authenticate(&self, token: &str) -> Option<UserInfo> {
        let h = hash_token(token);
        let found = self.find(&h).or_else(|| {
            // A token minted a moment ago: the file changed and the periodic reload is behind.
            if self.refresh() { self.find(&h) } else { None }
        });
        found.map(|mut u| {
            if !u.groups.iter().any(|g| g == "system:authenticated") {
                u.groups.push("system:authenticated".into());
            }
            u
        })
    }
}

fn constant_eq(a: &[u8; 32], b: &[u8; 32]) -> bool {
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// Holds an exclusive lock on `<tokens file>.lock` so concurrent issuers do not lose entries.
struct FileLock(#[allow(dead_code)] fs::File);

fn lock(path: &Path) -> Result<FileLock, AuthError> {
    let lock_path = path.with_extension("lock");
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    let f = fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&lock_path)
        .map_err(io_err(&lock_path))?;
    // SAFETY: flock on a descriptor we own; it blocks until the other issuer is done.
    let r = unsafe { libc::flock(f.as_raw_fd(), libc::LOCK_EX) };
    if r != 0 {
        return Err(io_err(&lock_path)(std::io::Error::last_os_error()));
    }
    Ok(FileLock(f))
}

fn write_entries(path: &Path, entries: &[TokenEntry]) -> Result<(), AuthError> {
    let data = serde_json::to_vec_pretty(entries).map_err(|e| AuthError::Invalid {
        path: path.to_path_buf(),
        message: e.to_string(),
    })?;
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(io_err(dir))?;
    }
    crate::tls::write_private(path, &data, 0o600).map_err(|e| AuthError::Invalid {
        path: path.to_path_buf(),
        message: e.to_string(),
    })
}

/// Who a new token authenticates as.
#[derive(Clone, Debug, Default)]
pub struct TokenRequest {
    pub user: String,
    pub groups: Vec<String>,
    /// Drop the user's other tokens, so re-issuing (e.g. at every supervisor start) rotates
    /// instead of accumulating credentials.
    pub replace: bool,
}

/// Mint a random 256-bit token for `req`, store only its hash in the token file at `path`
/// and return the token. A running server accepts it at once.
pub fn issue(path: &Path, req: &TokenRequest) -> Result<String, AuthError> {
    use rand::RngCore;
    if req.user.is_empty() {
        return Err(AuthError::Invalid {
            path: path.to_path_buf(),
            message: "a token needs a user name".into(),
        });
    }
    let mut raw = [0u8; 32];
    rand::rng().fill_bytes(&mut raw);
    let token = format!("rdd_{}", hex::encode(raw));
    let _lock = lock(path)?;
    let mut entries = read_entries(path)?;
    if req.replace {
        entries.retain(|e| e.user != req.user);
    }
    entries.push(TokenEntry {
        sha256: hex::encode(hash_token(&token)),
        user: req.user.clone(),
        uid: String::new(),
        groups: req.groups.clone(),
    });
    write_entries(path, &entries)?;
    Ok(token)
}

/// Remove every token of `user`; returns how many there were.
pub fn revoke(path: &Path, user: &str) -> Result<usize, AuthError> {
    let _lock = lock(path)?;
    let mut entries = read_entries(path)?;
    let before = entries.len();
    entries.retain(|e| e.user != user);
    let removed = before - entries.len();
    if removed > 0 {
        write_entries(path, &entries)?;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tokens_match_by_hash_only() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tokens.json");
        let entry = TokenEntry {
            sha256: hex::encode(hash_token("s3cret")),
            user: "alice".into(),
            uid: String::new(),
            groups: vec!["devs".into()],
        };
        std::fs::write(&p, serde_json::to_vec(&vec![entry]).unwrap()).unwrap();
        let t = Tokens::load(&p).unwrap();
        let u = t.authenticate("s3cret").unwrap();
        assert_eq!(u.username, "alice");
        assert!(u.groups.contains(&"system:authenticated".to_string()));
        assert!(t.authenticate("s3cre").is_none());
        assert!(!std::fs::read_to_string(&p).unwrap().contains("s3cret"));
    }

    #[test]
    fn issued_tokens_work_at_once_and_revocation_takes_them_away() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("tls/tokens.json");
        let t = Tokens::load(&p).unwrap();
        let sa = service_account_user("rdd-system", "image-controller");
        let req = TokenRequest {
            user: sa.clone(),
            groups: vec![],
            replace: true,
        };
        let first = issue(&p, &req).unwrap();
        let u = t.authenticate(&first).unwrap();
        assert_eq!(u.username, sa);
        for g in [
            "system:serviceaccounts",
            "system:serviceaccounts:rdd-system",
            "system:authenticated",
        ] {
            assert!(u.groups.iter().any(|x| x == g), "{g} in {:?}", u.groups);
        }
        let second = issue(&p, &req).unwrap();
        assert!(t.authenticate(&second).is_some());
        assert!(t.authenticate(&first).is_none(), "replaced");
        let other = issue(
            &p,
            &TokenRequest {
                user: "bob".into(),
                groups: vec!["devs".into()],
                replace: false,
            },
        )
        .unwrap();
        assert_eq!(revoke(&p, &sa).unwrap(), 1);
        t.refresh();
        assert!(t.authenticate(&second).is_none());
        assert_eq!(t.authenticate(&other).unwrap().groups[0], "devs");
        let mode = std::fs::metadata(&p).unwrap().mode() & 0o777;
        assert_eq!(mode, 0o600);
        assert!(!std::fs::read_to_string(&p).unwrap().contains(&other));
    }
}
