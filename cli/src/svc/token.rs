//! `rdd svc token`: bearer-token identities for the API server. The supervisor uses the same
//! functions to give every controller process its own kubeconfig
//! (`create --controller <name> --kubeconfig <path>`).

use std::path::{Path, PathBuf};

use anyhow::Context;
use clap::{Args, Subcommand};

use super::identities;
use rdd_process::instance::Instance;

#[derive(Subcommand, Debug)]
pub enum TokenCommand {
    /// Mint a token (256 random bits; only its SHA-256 is stored) and print it, or write a
    /// kubeconfig using it. A running server accepts it at once.
    Create(CreateArgs),
    /// Remove every token of a user (effective within a second).
    Revoke(RevokeArgs),
}

#[derive(Args, Debug)]
pub struct CreateArgs {
    /// User name the token authenticates as.
    #[arg(long, conflicts_with_all = ["service_account", "controller"], required_unless_present_any = ["service_account", "controller"])]
    pub user: Option<String>,
    /// Groups of that user (repeatable).
    #[arg(long = "group")]
    pub groups: Vec<String>,
    /// Authenticate as the ServiceAccount NAMESPACE/NAME (user system:serviceaccount:NS:NAME).
    #[arg(
        long = "service-account",
        value_name = "NAMESPACE/NAME",
        conflicts_with = "controller"
    )]
    pub service_account: Option<String>,
    /// Authenticate as an rdd controller (its ServiceAccount in rdd-system, with the rights
    /// deploy/rbac declares); replaces the controller's earlier tokens.
    #[arg(long)]
    pub controller: Option<String>,
    /// Replace the user's earlier tokens instead of adding one.
    #[arg(long)]
    pub replace: bool,
    /// Write a kubeconfig (mode 0600) using the token to this path instead of printing it.
    #[arg(long)]
    pub kubeconfig: Option<PathBuf>,
}

#[derive(Args, Debug)]
pub struct RevokeArgs {
    /// User whose tokens are removed (for a controller: system:serviceaccount:rdd-system:<name>).
    #[arg(long)]
    pub user: String,
}

pub fn tokens_file(inst: &Instance) -> PathBuf {
    inst.dir().join("tls").join("tokens.json")
}

pub fn run(inst: &Instance, cmd: TokenCommand) -> anyhow::Result<i32> {
    match cmd {
        TokenCommand::Create(a) => {
            let (user, replace) = match (&a.user, &a.service_account, &a.controller) {
                (Some(u), _, _) => (u.clone(), a.replace),
                (_, Some(sa), _) => {
                    let Some((ns, name)) = sa
                        .split_once('/')
                        .filter(|(n, m)| !n.is_empty() && !m.is_empty())
                    else {
                        anyhow::bail!("--service-account wants NAMESPACE/NAME, got {sa:?}");
                    };
                    (
                        rdd_apiserver::auth::service_account_user(ns, name),
                        a.replace,
                    )
                }
                (_, _, Some(c)) => (identities::controller_user(c)?, true),
                _ => anyhow::bail!("one of --user, --service-account or --controller is required"),
            };
            let req = rdd_apiserver::auth::TokenRequest {
                user: user.clone(),
                groups: a.groups.clone(),
                replace,
            };
            let token = rdd_apiserver::auth::issue(&tokens_file(inst), &req)?;
            match &a.kubeconfig {
                Some(path) => write_kubeconfig(inst, path, &user, &token)?,
                None => println!("{token}"),
            }
            Ok(0)
        }
        TokenCommand::Revoke(a) => {
            let n = rdd_apiserver::auth::revoke(&tokens_file(inst), &a.user)?;
            eprintln!("revoked {n} token(s) of {}", a.user);
            Ok(0)
        }
    }
}

/// The server address from the admin kubeconfig (it names the bound port), else the
/// instance's default port.
fn server_url(inst: &Instance) -> String {
    std::fs::read(inst.dir().join("config.yaml"))
        .ok()
        .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
        .and_then(|v| {
            v.pointer("/clusters/0/cluster/server")
                .and_then(|s| s.as_str())
                .map(str::to_string)
        })
        .unwrap_or_else(|| format!("https://127.0.0.1:{}", inst.secure_port()))
}

fn write_kubeconfig(inst: &Instance, path: &Path, user: &str, token: &str) -> anyhow::Result<()> {
    let ca_path = inst.dir().join("tls").join("ca.crt");
    let ca = std::fs::read_to_string(&ca_path).with_context(|| {
        format!(
            "{} (start the control plane once with `rdd svc serve` to create it)",
            ca_path.display()
        )
    })?;
    rdd_apiserver::kubeconfig::write_token(
        path,
        &ca,
        &server_url(inst),
        &inst.name(),
        user,
        token,
    )?;
    Ok(())
}
