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

fn yaml(path: &std::path::Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap();
    serde_saphyr::from_str(&text).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `docker compose config` (Compose v2), else Debian's `docker-compose config` (v1): validates
/// the file against the Compose schema without pulling or starting anything.
fn compose_config(file: &std::path::Path) -> std::process::Output {
    let v2 = std::process::Command::new("docker")
        .args(["compose", "version"])
        .output()
        .is_ok_and(|o| o.status.success());
    let mut cmd = if v2 {
        let mut c = std::process::Command::new("docker");
        c.arg("compose");
        c
    } else {
        std::process::Command::new("docker-compose")
    };
    cmd.arg("-f")
        .arg(file)
        .args(["config", "-q"])
        .output()
        .unwrap_or_else(|e| {
            panic!("neither `docker compose` nor docker-compose runs ({e}): apt-get install docker-compose")
        })
}

/// The observability stack of `deploy/observability/` is a valid Compose file (validated by
/// Compose itself, which also refuses a misspelt key, so the check can fail), Prometheus's
/// configuration passes `promtool check config`, and what the services mount is what the
/// repository holds: each configuration file at the path its command reads, the dashboards at
/// the path Grafana's provisioning scans, the data sources in Grafana's provisioning folder.
#[test]
fn obs_compose_file_is_valid_and_mounts_what_the_repository_holds() {
    let dir = crate::harness::repo_root().join("deploy/observability");
    let file = dir.join("compose.yaml");
    let o = compose_config(&file);
    assert!(
        o.status.success(),
        "compose config: {}",
        String::from_utf8_lossy(&o.stderr)
    );
    let tmp = tempfile::tempdir().unwrap();
    let bad = tmp.path().join("compose.yaml");
    std::fs::write(
        &bad,
        std::fs::read_to_string(&file)
            .unwrap()
            .replace("network_mode: host", "netwrk_mode: host"),
    )
    .unwrap();
    assert!(
        !compose_config(&bad).status.success(),
        "compose config accepted a misspelt key"
    );
    let o = std::process::Command::new("promtool")
        .args(["check", "config", "--syntax-only"])
        .arg(dir.join("prometheus.yml"))
        .output()
        .expect("promtool (Debian package prometheus) runs");
    assert!(
        o.status.success(),
        "promtool: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );

    let compose = yaml(&file);
    let services = compose["services"].as_object().unwrap();
    let mut names: Vec<&str> = services.keys().map(String::as_str).collect();
    names.sort();
    assert_eq!(names, ["grafana", "prometheus", "tempo"]);
    // source (relative to the compose file) -> target, for every service.
    let mut mounts = std::collections::BTreeMap::new();
    for (name, svc) in services {
        assert_eq!(
            svc["network_mode"], "host",
            "{name}: the processes listen on 127.0.0.1"
        );
        assert!(
            svc["image"].as_str().is_some_and(|i| i.contains(':')),
            "{name}: a pinned image"
        );
        for v in svc["volumes"].as_array().unwrap() {
            let v = v.as_str().unwrap();
            let mut parts = v.split(':');
            let (src, dst) = (parts.next().unwrap(), parts.next().unwrap());
            assert_eq!(parts.next(), Some("ro"), "{name}: {v} read-only");
            mounts.insert(src.to_string(), (name.clone(), dst.to_string()));
        }
    }
    for src in mounts.keys() {
        // targets/ is written by targets.py at run time and kept out of git.
        if src == "./targets" {
            let ignore = std::fs::read_to_string(dir.join(".gitignore")).unwrap();
            assert!(ignore.lines().any(|l| l == "targets/"), "{ignore}");
            continue;
        }
        assert!(dir.join(src).exists(), "{src} is mounted but missing");
    }
    let target = |src: &str| mounts[src].1.clone();
    let command = |svc: &str| -> String {
        services[svc]["command"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a.as_str().unwrap())
            .collect::<Vec<_>>()
            .join(" ")
    };
    assert!(
        command("prometheus").contains(&format!("--config.file={}", target("./prometheus.yml"))),
        "{}",
        command("prometheus")
    );
    assert!(command("tempo").contains(&format!("-config.file={}", target("./tempo.yaml"))));
    assert!(
        target("./grafana/datasources.yaml").starts_with("/etc/grafana/provisioning/datasources/")
    );
    assert!(
        target("./grafana/dashboards.yaml").starts_with("/etc/grafana/provisioning/dashboards/")
    );
    // The Prometheus configuration reads its targets where targets/ is mounted.
    let prom = std::fs::read_to_string(dir.join("prometheus.yml")).unwrap();
    assert!(prom.contains(&format!("{}/processes.json", target("./targets"))));
    // Grafana's dashboard provider scans the folder the repository's dashboards are mounted at.
    let providers = yaml(&dir.join("grafana/dashboards.yaml"));
    let paths: Vec<&str> = providers["providers"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["options"]["path"].as_str())
        .collect();
    assert_eq!(paths, [target("../dashboards")]);
}

/// The provisioned data sources: uid -> type.
fn datasources() -> std::collections::BTreeMap<String, String> {
    let d =
        yaml(&crate::harness::repo_root().join("deploy/observability/grafana/datasources.yaml"));
    assert_eq!(d["apiVersion"], 1);
    let mut out = std::collections::BTreeMap::new();
    for ds in d["datasources"].as_array().unwrap() {
        let uid = ds["uid"].as_str().expect("every data source has a uid");
        let prev = out.insert(uid.to_string(), ds["type"].as_str().unwrap().to_string());
        assert!(prev.is_none(), "data source uid {uid} twice");
    }
    out
}

/// What Grafana needs to import each dashboard of `deploy/dashboards/` and show it as meant: a
/// unique `uid` (Grafana's limit: 40 characters of `[A-Za-z0-9_-]`) and title, no fixed `id`,
/// `schemaVersion` 39 (docs/observability.md), panels with unique ids, a type, a title and a
/// place on the 24-column grid that no other panel takes, a data source that the provisioning
/// defines (same uid, same type), and targets with unique refIds, each on that data source and
/// holding its query (`expr` for Prometheus, `query` for Tempo); variables' data sources too.
#[test]
fn obs_dashboards_are_valid_for_grafana_import() {
    let sources = datasources();
    assert_eq!(
        sources,
        [("prometheus", "prometheus"), ("tempo", "tempo")]
            .map(|(a, b)| (a.to_string(), b.to_string()))
            .into()
    );
    let check_ds = |where_: &str, ds: &serde_json::Value| {
        let uid = ds["uid"]
            .as_str()
            .unwrap_or_else(|| panic!("{where_}: datasource {ds}"));
        assert_eq!(
            sources.get(uid).map(String::as_str),
            ds["type"].as_str(),
            "{where_}: datasource {ds} is not a provisioned one ({sources:?})"
        );
    };
    let mut uids = std::collections::BTreeSet::new();
    let mut titles = std::collections::BTreeSet::new();
    let files = files();
    assert_eq!(files.len(), 4, "{files:?}");
    for f in files {
        let name = f.file_name().unwrap().to_string_lossy().to_string();
        let d: serde_json::Value = serde_json::from_str(&std::fs::read_to_string(&f).unwrap())
            .unwrap_or_else(|e| panic!("{name}: {e}"));
        let uid = d["uid"].as_str().unwrap_or_else(|| panic!("{name}: uid"));
        assert!(
            !uid.is_empty()
                && uid.len() <= 40
                && uid
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'),
            "{name}: uid {uid:?}"
        );
        assert!(uids.insert(uid.to_string()), "{name}: uid {uid} twice");
        let title = d["title"].as_str().unwrap_or_default();
        assert!(
            !title.is_empty() && titles.insert(title.to_string()),
            "{name}: title {title:?}"
        );
        assert!(d["id"].is_null(), "{name}: a fixed id clashes on import");
        assert_eq!(d["schemaVersion"], 39, "{name}");
        for v in d["templating"]["list"].as_array().unwrap() {
            if v["type"] == "query" {
                check_ds(&format!("{name}: variable {}", v["name"]), &v["datasource"]);
            }
        }
        let panels = d["panels"].as_array().unwrap();
        assert!(!panels.is_empty(), "{name}: no panels");
        let mut ids = std::collections::BTreeSet::new();
        let mut cells = std::collections::BTreeSet::new();
        for p in panels {
            let id = p["id"]
                .as_u64()
                .unwrap_or_else(|| panic!("{name}: panel id in {p}"));
            let at = format!("{name}: panel {id}");
            assert!(ids.insert(id), "{at}: id twice");
            assert!(
                p["type"].as_str().is_some_and(|t| !t.is_empty()),
                "{at}: type"
            );
            assert!(
                p["title"].as_str().is_some_and(|t| !t.is_empty()),
                "{at}: title"
            );
            let g = &p["gridPos"];
            let (x, y, w, h) = (
                g["x"].as_u64().unwrap(),
                g["y"].as_u64().unwrap(),
                g["w"].as_u64().unwrap(),
                g["h"].as_u64().unwrap(),
            );
            assert!(w > 0 && h > 0 && x + w <= 24, "{at}: gridPos {g}");
            for cx in x..x + w {
                for cy in y..y + h {
                    assert!(cells.insert((cx, cy)), "{at} overlaps another panel");
                }
            }
            check_ds(&at, &p["datasource"]);
            let targets = p["targets"]
                .as_array()
                .unwrap_or_else(|| panic!("{at}: targets"));
            assert!(!targets.is_empty(), "{at}: no targets");
            let mut refs = std::collections::BTreeSet::new();
            for t in targets {
                let r = t["refId"].as_str().unwrap_or_else(|| panic!("{at}: refId"));
                assert!(refs.insert(r.to_string()), "{at}: refId {r} twice");
                check_ds(&at, &t["datasource"]);
                let query = match t["datasource"]["type"].as_str() {
                    Some("prometheus") => &t["expr"],
                    Some("tempo") => &t["query"],
                    other => panic!("{at}: data source type {other:?}"),
                };
                assert!(
                    query.as_str().is_some_and(|q| !q.trim().is_empty()),
                    "{at}: target {r} has no query"
                );
            }
        }
    }
}
