//! `ssm-audit`: parse the flags, validate them into a configuration before
//! any AWS call, run, and map the outcome to a documented exit code.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use ssm_audit::cli::{Cli, Command};
use ssm_audit::config::ExportConfig;
use ssm_audit::export::{self, exit_code, ExportError};
use tokio::sync::watch;

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_target(false)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SSM_AUDIT_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,ssm_audit=info")),
        )
        .init();
    match run(cli) {
        Ok(()) => ExitCode::from(exit_code::SUCCESS),
        Err(error) => {
            eprintln!("ssm-audit: error: {error:#}");
            let code = error
                .chain()
                .find_map(|cause| cause.downcast_ref::<ExportError>())
                .map_or(exit_code::FAILURE, ExportError::exit_code);
            ExitCode::from(code)
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Export(args) => {
            let config = ExportConfig::from_args(&args, chrono::Utc::now().timestamp_millis())
                .map_err(ExportError::from)?;
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .enable_all()
                .build()
                .context("cannot start the async runtime")?;
            let output = config.output.to_string();
            let summary = runtime
                .block_on(async {
                    let (shutdown_tx, shutdown_rx) = watch::channel(false);
                    tokio::spawn(async move {
                        wait_for_signal().await;
                        tracing::warn!("stop requested: finishing calls in flight, then exiting");
                        let _ = shutdown_tx.send(true);
                    });
                    export::run(config, shutdown_rx).await
                })
                .with_context(|| format!("export into {output} failed"))?;
            eprintln!("ssm-audit: {summary}");
            Ok(())
        }
    }
}

/// Completes on SIGINT or SIGTERM (what ECS sends before SIGKILL).
async fn wait_for_signal() {
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        () = terminate => {}
    }
}
