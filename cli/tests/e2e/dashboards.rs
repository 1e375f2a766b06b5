//! The Grafana dashboards in `deploy/dashboards/` (docs/observability.md §3) against a real
//! scrape: every file parses, every Prometheus query is valid PromQL, and every metric a query
//! names is one the processes export. Metric references are written `name{…}` (a selector
//! always follows the name), which is what [`metric_names`] relies on.

use std::path::PathBuf;

use crate::observability::{Prometheus, http_get};

pub fn files() -> Vec<PathBuf> {
    let dir = crate::harness::repo_root().join("deploy/dashboards");
    let mut out: Vec<PathBuf> = std::fs::read_dir(&dir)
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    out.sort();
    out
}

/// Identifiers directly followed by `{`: the metrics a PromQL expression selects.
pub fn metric_names(expr: &str) -> Vec<String> {
    let b = expr.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let c = b[i];
        if c.is_ascii_alphabetic() || c == b'_' || c == b':' {
            let start = i;
            while i < b.len() && (b[i].is_ascii_alphanumeric() || b[i] == b'_' || b[i] == b':') {
                i += 1;
            }
            let preceded_by_quote_or_dollar = start > 0 && matches!(b[start - 1], b'"' | b'$');
            if i < b.len() && b[i] == b'{' && !preceded_by_quote_or_dollar {
                out.push(expr[start..i].to_string());
            }
            // Skip a selector: label names inside it are not metrics.
            if i < b.len() && b[i] == b'{' {
                while i < b.len() && b[i] != b'}' {
                    i += 1;
                }
            }
        } else {
            i += 1;
        }
    }
    out
}

/// Every (file, expression) of Prometheus queries, panel targets and `label_values` variables.
pub fn prometheus_queries() -> Vec<(String, String)> {
    let mut out = Vec::new();
    for f in files() {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let text = std::fs::read_to_string(&f).unwrap();
        let d: serde_json::Value =
            serde_json::from_str(&text).unwrap_or_else(|e| panic!("{name} does not parse: {e}"));
        assert!(d["uid"].is_string() && d["title"].is_string(), "{name}");
        for p in d["panels"].as_array().unwrap() {
            for t in p["targets"].as_array().into_iter().flatten() {
                if t["datasource"]["type"] == "prometheus" {
                    out.push((name.clone(), t["expr"].as_str().unwrap().to_string()));
                }
            }
        }
        for v in d["templating"]["list"].as_array().into_iter().flatten() {
            if let Some(q) = v["definition"].as_str()
                && let Some(inner) = q
                    .strip_prefix("label_values(")
                    .and_then(|r| r.split(',').next())
            {
                out.push((name.clone(), format!("{inner}{{}}")));
            }
        }
    }
    out
}

/// Grafana's variables replaced by values Prometheus accepts, to run a panel's query as is.
fn concrete(expr: &str) -> String {
    expr.replace("$__rate_interval", "1m")
        .replace("$__range", "5m")
        .replace("$controller", ".*")
}

pub fn check_against(prom: &Prometheus) {
    let exported = prom.names();
    let queries = prometheus_queries();
    assert!(queries.len() >= 20, "dashboards hold their queries");
    let mut missing = Vec::new();
    for (file, expr) in &queries {
        let names = metric_names(expr);
        assert!(!names.is_empty(), "{file}: {expr} names no metric");
        for n in names {
            if !exported.contains(&n) {
                missing.push(format!("{file}: {n}"));
            }
        }
        let path = format!(
            "/api/v1/query?query={}",
            crate::observability::urlencode(&concrete(expr))
        );
        let (code, body) = http_get(&prom.addr, &path).expect("query Prometheus");
        assert_eq!(code, 200, "{file}: {expr} is valid PromQL: {body}");
    }
    assert!(
        missing.is_empty(),
        "referenced but not exported: {missing:?}"
    );
    // The trace view queries a Tempo data source.
    let traces: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(crate::harness::repo_root().join("deploy/dashboards/traces.json"))
            .unwrap(),
    )
    .unwrap();
    assert!(
        traces["panels"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["type"] == "traces" && p["datasource"]["type"] == "tempo")
    );
}

#[test]
fn obs_metric_names_are_read_from_selectors() {
    assert_eq!(
        metric_names(
            r#"histogram_quantile(0.99, sum by (le) (rate(a_b_bucket{x=~"$y", z="w{"}[1m]))) / c{}"#
        ),
        ["a_b_bucket", "c"]
    );
}
