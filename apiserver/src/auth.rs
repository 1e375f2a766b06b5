//! Authentication: bearer tokens (stored SHA-256-hashed, compared in constant time) and client
//! certificates signed by the instance CA.

use std::path::Path;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

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

/// One line of `tokens.json`: the token's SHA-256 (hex) and who it is.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct TokenEntry {
    pub sha256: String,
    pub user: String,
    #[serde(default)]
    pub uid: String,
    #[serde(default)]
    pub groups: Vec<String>,
}

#[derive(Debug, Default)]
pub struct Tokens {
    entries: Vec<([u8; 32], UserInfo)>,
}

pub fn hash_token(token: &str) -> [u8; 32] {
    Sha256::digest(token.as_bytes()).into()
}

impl Tokens {
    pub fn load(path: &Path) -> Result<Tokens, String> {
        let data = match std::fs::read(path) {
            Ok(d) => d,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Tokens::default()),
            Err(e) => return Err(format!("{}: {e}", path.display())),
        };
        let list: Vec<TokenEntry> =
            serde_json::from_slice(&data).map_err(|e| format!("{}: {e}", path.display()))?;
        let mut entries = Vec::new();
        for t in list {
            let bytes = hex::decode(&t.sha256).map_err(|e| format!("{}: {e}", path.display()))?;
            let hash: [u8; 32] = bytes
                .try_into()
                .map_err(|_| format!("{}: sha256 must be 32 bytes", path.display()))?;
            entries.push((
                hash,
                UserInfo {
                    username: t.user,
                    uid: t.uid,
                    groups: t.groups,
                },
            ));
        }
        Ok(Tokens { entries })
    }

    pub fn authenticate(&self, token: &str) -> Option<UserInfo> {
        let h = hash_token(token);
        let mut found = None;
        // Look at every entry so timing does not reveal which one matched.
        for (e, u) in &self.entries {
            if constant_eq(e, &h) {
                found = Some(u.clone());
            }
        }
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
}
