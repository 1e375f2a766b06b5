//! The configured label selector of a mirror controller (`a=b,c`): equality terms only, because
//! they are what Docker's `label` list filter understands. Containers carry their labels in the
//! event attributes, so the gateway filters their events; image `delete` events and every volume
//! event carry no labels, so the image- and volume-controllers subscribe unfiltered and test the
//! labels of what they inspect with [`matches`].

/// `a=b,c` → Docker label filters `["a=b", "c"]`.
pub fn docker_filters(selector: &str) -> Vec<String> {
    selector
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

/// Whether `labels` satisfy every term (`key=value`: equal; `key`: present). No terms: true.
pub fn matches<'a>(
    terms: &[String],
    labels: impl IntoIterator<Item = (&'a String, &'a String)> + Clone,
) -> bool {
    terms.iter().all(|t| {
        let (key, value) = match t.split_once('=') {
            Some((k, v)) => (k.trim(), Some(v.trim())),
            None => (t.trim(), None),
        };
        labels
            .clone()
            .into_iter()
            .any(|(k, v)| k == key && value.is_none_or(|want| v == want))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn equality_and_presence_terms() {
        let terms = docker_filters(" rdd-test=abc , keep ,");
        assert_eq!(terms, ["rdd-test=abc", "keep"]);
        let l: HashMap<String, String> = [("rdd-test", "abc"), ("keep", "")]
            .into_iter()
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .collect();
        assert!(matches(&terms, &l));
        let other: HashMap<String, String> = [("rdd-test".to_string(), "x".to_string())].into();
        assert!(!matches(&terms, &other));
        assert!(matches(&[], &other));
        assert!(!matches(&terms, &HashMap::new()));
    }
}
