//! Label selectors over event attributes, in the Kubernetes syntax subscribers already use for
//! the API: `a=b`, `a==b`, `a!=b`, `a`, `!a`, `a in (x,y)`, `a notin (x,y)`, comma-separated.

use std::collections::HashMap;

#[derive(Clone, Debug, PartialEq)]
enum Req {
    Eq(String, String),
    NotEq(String, String),
    Exists(String),
    NotExists(String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Selector(Vec<Req>);

fn split_top_level(s: &str) -> Vec<&str> {
    let mut out = Vec::new();
    let mut depth = 0;
    let mut start = 0;
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                out.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    out.push(&s[start..]);
    out
}

fn key(k: &str, whole: &str) -> Result<String, String> {
    let k = k.trim();
    let ok = !k.is_empty()
        && k.len() <= 317
        && k.chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.' | '/'));
    if ok {
        Ok(k.to_string())
    } else {
        Err(format!("invalid label key {k:?} in selector {whole:?}"))
    }
}

fn set(rest: &str, whole: &str) -> Result<Vec<String>, String> {
    let inner = rest
        .trim()
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| format!("expected (v1,v2,...) in selector {whole:?}"))?;
    Ok(inner.split(',').map(|v| v.trim().to_string()).collect())
}

impl Selector {
    pub fn parse(s: &str) -> Result<Selector, String> {
        let mut reqs = Vec::new();
        if s.trim().is_empty() {
            return Ok(Selector(reqs));
        }
        for part in split_top_level(s) {
            let p = part.trim();
            if p.is_empty() {
                return Err(format!("empty requirement in selector {s:?}"));
            }
            let r = if let Some(k) = p.strip_prefix('!') {
                Req::NotExists(key(k, s)?)
            } else if let Some((k, v)) = p.split_once("!=") {
                Req::NotEq(key(k, s)?, v.trim().to_string())
            } else if let Some((k, v)) = p.split_once("==").or_else(|| p.split_once('=')) {
                Req::Eq(key(k, s)?, v.trim().to_string())
            } else if let Some((k, rest)) = p.split_once(" notin ") {
                Req::NotIn(key(k, s)?, set(rest, s)?)
            } else if let Some((k, rest)) = p.split_once(" in ") {
                Req::In(key(k, s)?, set(rest, s)?)
            } else {
                Req::Exists(key(p, s)?)
            };
            reqs.push(r);
        }
        Ok(Selector(reqs))
    }

    pub fn matches(&self, labels: &HashMap<String, String>) -> bool {
        self.0.iter().all(|r| match r {
            Req::Eq(k, v) => labels.get(k) == Some(v),
            Req::NotEq(k, v) => labels.get(k) != Some(v),
            Req::Exists(k) => labels.contains_key(k),
            Req::NotExists(k) => !labels.contains_key(k),
            Req::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            Req::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn l(pairs: &[(&str, &str)]) -> HashMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn forms() {
        let s =
            Selector::parse("app=web, tier!=db,owner,!tmp, env in (a, b),zone notin (x)").unwrap();
        assert!(s.matches(&l(&[("app", "web"), ("owner", "me"), ("env", "b")])));
        assert!(!s.matches(&l(&[("app", "web"), ("owner", "me"), ("env", "c")])));
        assert!(!s.matches(&l(&[
            ("app", "web"),
            ("owner", "me"),
            ("env", "a"),
            ("tmp", "")
        ])));
        assert!(!s.matches(&l(&[("app", "web"), ("env", "a")])));
        assert!(!s.matches(&l(&[
            ("app", "web"),
            ("owner", "1"),
            ("env", "a"),
            ("zone", "x")
        ])));
        assert!(Selector::parse("").unwrap().matches(&l(&[])));
        assert!(Selector::parse("a==1").unwrap().matches(&l(&[("a", "1")])));
    }

    #[test]
    fn rejects() {
        for bad in ["a=b,,c", "a b", "in (x", "k in x", "!"] {
            assert!(Selector::parse(bad).is_err(), "{bad}");
        }
    }
}
