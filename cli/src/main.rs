//! `rdd`: the Rancher Desktop Daemon command line.

mod argv;
mod exit;
mod limavm;
mod logging;
mod passthrough;
mod run;
mod set;
mod svc;
mod wait;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};

/// rdd — the Rancher Desktop Daemon.
///
/// Environment: RDD_INSTANCE selects the instance (default 2; or `--instance NAME` as the very
/// first argument); RDD_LOG_LEVEL sets the log level; RDD_DEVELOPER_MODE=true shows the
/// developer commands (ctl, limavm, yq) and flags. Installed (or linked) under the name
/// `kubectl` or `yq`, rdd behaves as `rdd kubectl` / `rdd yq`.
#[derive(Parser, Debug)]
#[command(name = "rdd", version, about, long_about)]
struct Cli {
    /// Log level: fatal, error, warn, info, debug, trace (default: RDD_LOG_LEVEL, else debug in
    /// developer mode, else warn).
    #[arg(long = "log-level", global = true)]
    log_level: Option<String>,
    /// Log format: text or json.
    #[arg(long = "log-format", global = true, default_value = "text")]
    log_format: String,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand, Debug)]
enum Command {
    /// Manage the instance's control plane.
    #[command(subcommand, visible_alias = "service")]
    Svc(svc::SvcCommand),
    /// Set App properties (PROPERTY=VALUE…) and wait until the App is settled.
    Set(set::SetArgs),
    /// Start the VM and container engine (`rdd set running=true`).
    Start(set::WaitFlags),
    /// Stop the VM and container engine (`rdd set running=false`).
    Stop(set::WaitFlags),
    /// kubectl against this instance's API server (started when needed); also
    /// `rdd ctl wait-condition TYPE/NAME CONDITION[=STATUS]`.
    #[command(disable_help_flag = true)]
    Ctl {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Run COMMAND with this instance's tools first on PATH, its Docker context and its
    /// kubeconfig, after starting the App; the command's exit status is rdd's.
    #[command(disable_help_flag = true)]
    Run {
        #[arg(
            trailing_var_arg = true,
            allow_hyphen_values = true,
            value_name = "COMMAND [ARGS]"
        )]
        args: Vec<String>,
    },
    /// Manage LimaVMs (the VMs of this instance).
    #[command(subcommand, visible_alias = "lima")]
    Limavm(limavm::LimaCommand),
    /// Print a shell completion script (bash, zsh, fish, elvish, powershell).
    Completion { shell: clap_complete::Shell },
    /// kubectl with the caller's own KUBECONFIG.
    #[command(disable_help_flag = true)]
    Kubectl {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// yq (the YAML processor on PATH).
    #[command(disable_help_flag = true)]
    Yq {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// The command tree; outside developer mode the developer commands and flags are hidden (they
/// still work when typed).
fn command(developer: bool) -> clap::Command {
    let hide = !developer;
    let hide_flags = |c: clap::Command| {
        c.mut_arg("controllers", |a| a.hide(hide))
            .mut_arg("secure_port", |a| a.hide(hide))
    };
    Cli::command()
        .mut_subcommand("ctl", |c| c.hide(hide))
        .mut_subcommand("limavm", |c| c.hide(hide))
        .mut_subcommand("yq", |c| c.hide(hide))
        .mut_subcommand("svc", |s| {
            s.mut_subcommand("create", hide_flags)
                .mut_subcommand("start", hide_flags)
        })
}

/// One line on stderr for an error, in the log format; `code` is the exit status.
fn fail(format: logging::Format, message: &str, code: i32) -> ! {
    let time = chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let line = match format {
        logging::Format::Json => {
            serde_json::json!({"level": "fatal", "msg": message, "time": time}).to_string()
        }
        logging::Format::Text => format!(
            "time=\"{time}\" level=fatal msg={}",
            serde_json::Value::String(message.to_string())
        ),
    };
    eprintln!("{line}");
    std::process::exit(code);
}

fn main() {
    // Die quietly on a closed pipe (`rdd svc status | head`), like other command-line tools.
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let (args, instance) = argv::preprocess(std::env::args_os().collect());
    if let Some(i) = instance {
        // SAFETY: no other thread exists yet; everything instance-derived reads it later.
        unsafe { std::env::set_var("RDD_INSTANCE", i) };
    }
    let developer = argv::developer_mode();
    // The format flag is needed to report a usage error in it.
    let early_format = args
        .iter()
        .filter_map(|a| a.to_str())
        .find_map(|a| a.strip_prefix("--log-format="))
        .and_then(|f| logging::parse_format(f).ok())
        .unwrap_or(logging::Format::Text);
    // `rdd set --help` appends the properties of the live App schema (cli.md §5.4).
    if is_set_help(&args) {
        let mut set = command(developer);
        let help = set
            .find_subcommand_mut("set")
            .map(|c| c.render_long_help().to_string())
            .unwrap_or_default();
        let level = logging::level(None, developer).unwrap_or("warn");
        logging::init(level, early_format);
        let code = tokio::runtime::Runtime::new()
            .map_err(anyhow::Error::from)
            .and_then(|rt| {
                rt.block_on(with_instance(|i| async move { set::help(&i, help).await }))
            });
        match code {
            Ok(c) => std::process::exit(c),
            Err(e) => fail(early_format, &format!("{e:#}"), 1),
        }
    }
    let matches = match command(developer).try_get_matches_from(&args) {
        Ok(m) => m,
        Err(e) => match e.kind() {
            clap::error::ErrorKind::DisplayHelp
            | clap::error::ErrorKind::DisplayVersion
            | clap::error::ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand => e.exit(),
            _ => {
                let text = e.to_string();
                let first = text.lines().next().unwrap_or("invalid arguments");
                let msg = first.strip_prefix("error: ").unwrap_or(first);
                fail(early_format, &format!("{msg} (see --help)"), 2)
            }
        },
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => fail(early_format, &e.to_string(), 2),
    };
    let format = match logging::parse_format(&cli.log_format) {
        Ok(f) => f,
        Err(e) => fail(logging::Format::Text, &e, 1),
    };
    let level = match logging::level(cli.log_level.as_deref(), developer) {
        Ok(l) => l,
        Err(e) => fail(format, &e, 1),
    };
    let rt = match tokio::runtime::Runtime::new() {
        Ok(rt) => rt,
        Err(e) => fail(format, &e.to_string(), 1),
    };
    // Only the long-running control plane exports spans (the API server's request spans).
    let otlp = match &cli.command {
        Command::Svc(svc::SvcCommand::Serve(_)) => rdd_process::telemetry::otlp_endpoint(None),
        _ => None,
    };
    let telemetry = {
        let _rt = rt.enter();
        logging::init_with_otlp(level, format, otlp.as_deref())
    };
    let code = rt.block_on(async move {
        match cli.command {
            Command::Svc(c) => svc::run(c, developer).await,
            Command::Kubectl { args } => passthrough::run("kubectl", &args, &[]),
            Command::Yq { args } => passthrough::run("yq", &args, &[]),
            Command::Completion { shell } => {
                clap_complete::generate(
                    shell,
                    &mut command(developer),
                    "rdd",
                    &mut std::io::stdout(),
                );
                Ok(0)
            }
            Command::Set(a) => with_instance(|i| async move { set::set(&i, a).await }).await,
            Command::Start(w) => with_instance(|i| async move { set::start(&i, w).await }).await,
            Command::Stop(w) => with_instance(|i| async move { set::stop(&i, w).await }).await,
            Command::Ctl { args } => {
                with_instance(|i| async move { set::ctl(&i, args).await }).await
            }
            Command::Run { args } => {
                let help = command(developer)
                    .find_subcommand_mut("run")
                    .map(|c| c.render_long_help().to_string())
                    .unwrap_or_default();
                with_instance(|i| async move { run::run(&i, args, help).await }).await
            }
            Command::Limavm(c) => with_instance(|i| async move { limavm::run(&i, c).await }).await,
        }
    });
    // Flush buffered spans: process::exit skips destructors.
    drop(telemetry);
    match code {
        Ok(c) => std::process::exit(c),
        Err(e) => {
            let exit = e.downcast_ref::<exit::ExitError>();
            let code = exit.map_or(1, |x| x.code);
            // An exit code without a message is not logged (cli.md §1.4).
            if exit.is_some_and(|x| x.message.is_empty()) {
                std::process::exit(code);
            }
            fail(format, &format!("{e:#}"), code)
        }
    }
}

/// `rdd [global flags] set … -h|--help` (global flags: `--log-level`/`--log-format` with their
/// value in the next argument or after `=`).
fn is_set_help(args: &[std::ffi::OsString]) -> bool {
    let args: Vec<&str> = args.iter().skip(1).filter_map(|a| a.to_str()).collect();
    let mut i = 0;
    while i < args.len() && args[i].starts_with('-') {
        i += if matches!(args[i], "--log-level" | "--log-format") {
            2
        } else {
            1
        };
    }
    args.get(i) == Some(&"set")
        && args[i + 1..]
            .iter()
            .take_while(|a| **a != "--")
            .any(|a| *a == "-h" || *a == "--help")
}

async fn with_instance<F, Fut>(f: F) -> anyhow::Result<i32>
where
    F: FnOnce(rdd_process::instance::Instance) -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<i32>>,
{
    let inst = rdd_process::instance::Instance::from_env().map_err(anyhow::Error::msg)?;
    f(inst).await
}
