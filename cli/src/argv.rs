//! What happens to the command line before clap sees it (cli.md §1.1, §1.2): the multi-call
//! names `kubectl` and `yq`, the `--instance` first argument, and developer mode.

use std::ffi::OsString;
use std::path::{Path, PathBuf};

/// The arguments as `rdd` parses them, after the multi-call rewrite and the `--instance` step.
/// Returns the instance named by `--instance`, if any (the caller exports it as
/// `RDD_INSTANCE` before anything derives paths from it).
pub fn preprocess(mut args: Vec<OsString>) -> (Vec<OsString>, Option<String>) {
    if args.is_empty() {
        args.push("rdd".into());
    }
    let instance = take_instance(&mut args);
    let base = Path::new(&args[0])
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = base.split('.').next().unwrap_or_default();
    if stem == "kubectl" || stem == "yq" {
        args.insert(1, stem.into());
        args[0] = "rdd".into();
    }
    (args, instance)
}

/// `--instance=NAME` / `--instance NAME`, only as the very first argument; removed whatever its
/// value (an empty value, or a following flag or nothing, is ignored).
fn take_instance(args: &mut Vec<OsString>) -> Option<String> {
    let first = args.get(1)?.to_string_lossy().into_owned();
    if let Some(v) = first.strip_prefix("--instance=") {
        let v = v.to_string();
        args.remove(1);
        return (!v.is_empty()).then_some(v);
    }
    if first != "--instance" {
        return None;
    }
    args.remove(1);
    match args.get(1).map(|a| a.to_string_lossy().into_owned()) {
        Some(v) if !v.starts_with('-') => {
            args.remove(1);
            (!v.is_empty()).then_some(v)
        }
        _ => None,
    }
}

/// Go's `strconv.ParseBool`.
pub fn parse_bool(s: &str) -> Option<bool> {
    match s {
        "1" | "t" | "T" | "true" | "TRUE" | "True" => Some(true),
        "0" | "f" | "F" | "false" | "FALSE" | "False" => Some(false),
        _ => None,
    }
}

/// Developer mode: `RDD_DEVELOPER_MODE` as a boolean (unparseable = off); when unset, whether
/// this executable is a cargo build inside a source checkout (`<repo>/target/<profile>/rdd`).
pub fn developer_mode() -> bool {
    match std::env::var("RDD_DEVELOPER_MODE") {
        Ok(v) => parse_bool(&v).unwrap_or(false),
        Err(_) => std::env::current_exe()
            .ok()
            .and_then(|e| in_checkout(&e))
            .unwrap_or(false),
    }
}

fn in_checkout(exe: &Path) -> Option<bool> {
    let repo: PathBuf = exe.parent()?.parent()?.parent()?.to_path_buf();
    Some(repo.join("cli/src/main.rs").is_file())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(a: &[&str]) -> (Vec<String>, Option<String>) {
        let (args, inst) = preprocess(a.iter().map(OsString::from).collect());
        (
            args.iter()
                .map(|s| s.to_string_lossy().into_owned())
                .collect(),
            inst,
        )
    }

    #[test]
    fn instance_only_as_first_argument() {
        assert_eq!(
            run(&["rdd", "--instance=x", "svc", "status"]),
            (
                vec!["rdd".into(), "svc".into(), "status".into()],
                Some("x".into())
            )
        );
        assert_eq!(
            run(&["rdd", "--instance", "y", "svc"]),
            (vec!["rdd".into(), "svc".into()], Some("y".into()))
        );
        assert_eq!(run(&["rdd", "--instance=", "svc"]).1, None);
        assert_eq!(
            run(&["rdd", "--instance", "--log-level=info", "svc"]),
            (
                vec!["rdd".into(), "--log-level=info".into(), "svc".into()],
                None
            )
        );
        assert_eq!(run(&["rdd", "--instance"]), (vec!["rdd".into()], None));
        // Anywhere else it is left for clap, which refuses it.
        assert_eq!(
            run(&["rdd", "svc", "--instance=x"]).0,
            vec!["rdd", "svc", "--instance=x"]
        );
    }

    #[test]
    fn multi_call_names() {
        assert_eq!(
            run(&["/usr/local/bin/kubectl", "get", "pods"]).0,
            vec!["rdd", "kubectl", "get", "pods"]
        );
        assert_eq!(run(&["yq.exe", "."]).0, vec!["rdd", "yq", "."]);
        assert_eq!(run(&["rdd", "get"]).0, vec!["rdd", "get"]);
    }

    #[test]
    fn booleans() {
        assert_eq!(parse_bool("T"), Some(true));
        assert_eq!(parse_bool("0"), Some(false));
        assert_eq!(parse_bool("yes"), None);
    }
}
