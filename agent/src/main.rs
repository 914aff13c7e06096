//! The `ward` command.

use std::{path::PathBuf, process::ExitCode};

use anyhow::Context;
use clap::{Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "ward", version, about = "Node-level, sidecarless OIDC/JWT enforcement for Kubernetes")]
struct Cli {
    /// Log filter (tracing EnvFilter syntax); RUST_LOG overrides.
    #[arg(long, global = true, default_value = "info")]
    log_level: String,
    /// Log format for the agent's own logs.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the agent.
    Run {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Check a config file; exits non-zero and names file:line:column and the field path.
    CheckConfig {
        #[arg(long, short)]
        config: PathBuf,
    },
    /// Print the decision for one request as JSON; exit 0 for allow, 1 otherwise.
    Explain(ward::explain::ExplainArgs),
    /// Detach the eBPF capture and remove its pins. Protected traffic then flows unchecked.
    Uninstall {
        /// Read `capture.pinPath` from this config file.
        #[arg(long, short, conflicts_with = "pin_path")]
        config: Option<PathBuf>,
        /// The bpffs directory ward pinned into.
        #[arg(long, default_value = "/sys/fs/bpf/ward")]
        pin_path: PathBuf,
    },
    /// Run a development OIDC issuer (FOR DEMOS AND TESTS ONLY, NEVER PRODUCTION).
    DevIdp(ward::devidp::DevIdpOptions),
}

fn init_logging(cli: &Cli) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(&cli.log_level));
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr());
    let builder = tracing_subscriber::fmt().with_env_filter(filter).with_writer(std::io::stderr).with_ansi(ansi);
    match cli.log_format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().flatten_event(true).init(),
    }
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("ward: {e:#}");
            ExitCode::from(2)
        }
    }
}

#[expect(clippy::print_stdout, reason = "a CLI's results go to stdout")]
fn run(cli: Cli) -> anyhow::Result<ExitCode> {
    match cli.command {
        Command::CheckConfig { ref config } => match ward::config::load_file(config) {
            Ok(c) => {
                println!(
                    "{}: ok ({} issuers, {} policies, {} listeners{})",
                    config.display(),
                    c.issuers.len(),
                    c.policies.len(),
                    c.listeners.len(),
                    if c.capture.is_some() { ", capture" } else { "" }
                );
                Ok(ExitCode::SUCCESS)
            }
            Err(e) => {
                eprintln!("{e}");
                Ok(ExitCode::from(1))
            }
        },
        Command::Explain(ref args) => {
            init_logging(&cli);
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            let out = rt.block_on(ward::explain::explain(args))?;
            println!("{}", serde_json::to_string_pretty(&out.json)?);
            Ok(if out.allowed { ExitCode::SUCCESS } else { ExitCode::from(1) })
        }
        Command::Uninstall { ref config, ref pin_path } => {
            init_logging(&cli);
            let pin_path = match config {
                Some(c) => ward::config::load_file(c)?.capture.map(|c| c.pin_path).unwrap_or_else(|| pin_path.clone()),
                None => pin_path.clone(),
            };
            let report = ward::capture::uninstall(&pin_path)?;
            if report.is_empty() {
                println!("nothing pinned under {}", pin_path.display());
            } else {
                println!(
                    "removed from {}: links {:?}, programs {:?}, maps {:?}",
                    pin_path.display(),
                    report.links,
                    report.programs,
                    report.maps
                );
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::DevIdp(ref opts) => {
            init_logging(&cli);
            let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
            rt.block_on(async {
                let listener = tokio::net::TcpListener::bind(opts.listen)
                    .await
                    .with_context(|| format!("dev IdP cannot listen on {}", opts.listen))?;
                ward::devidp::serve(listener, opts.clone()).await.context("dev IdP stopped")
            })?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Run { ref config } => {
            init_logging(&cli);
            let rt = tokio::runtime::Builder::new_multi_thread().enable_all().thread_name("ward").build()?;
            rt.block_on(ward::app::run(config.clone())).context("ward stopped")?;
            Ok(ExitCode::SUCCESS)
        }
    }
}
