//! `ssm-audit`: parse the flags, validate them into a configuration before
//! any AWS call, run, and map the outcome to a documented exit code.

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use ssm_audit::cli::{Cli, Command};
use ssm_audit::config::{AwsSettings, ConfigError, ExportConfig, Location, S3Settings};
use ssm_audit::export::{self, exit_code, ExportError};
use ssm_audit::report::{self, ReportConfig};
use ssm_audit::verify::{self, VerifyError};
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
            ExitCode::from(exit_code_of(&error))
        }
    }
}

/// The one place that turns an error into an exit code (see the README).
fn exit_code_of(error: &anyhow::Error) -> u8 {
    for cause in error.chain() {
        if let Some(e) = cause.downcast_ref::<ExportError>() {
            return e.exit_code();
        }
        if cause.is::<ConfigError>() {
            return exit_code::USAGE;
        }
        if let Some(VerifyError::Differences) = cause.downcast_ref::<VerifyError>() {
            return exit_code::DIFFERENCES;
        }
    }
    exit_code::FAILURE
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Export(args) => {
            let config = ExportConfig::from_args(&args, chrono::Utc::now().timestamp_millis())?;
            let output = config.output.to_string();
            let summary = runtime()?
                .block_on(async {
                    let (shutdown_tx, shutdown_rx) = watch::channel(false);
                    tokio::spawn(async move {
                        wait_for_signal().await;
                        tracing::warn!(
                            "stop requested: abandoning calls in flight, saving the checkpoint"
                        );
                        let _ = shutdown_tx.send(true);
                    });
                    export::run(config, shutdown_rx).await
                })
                .with_context(|| format!("export into {output} failed"))?;
            eprintln!("ssm-audit: {summary}");
            Ok(())
        }
        Command::Verify(args) => {
            let location = Location::parse("--output", &args.output)?;
            let aws = AwsSettings::from_args(&args.aws, None);
            let s3 = S3Settings {
                force_path_style: args.aws.s3_force_path_style,
                ..S3Settings::default()
            };
            runtime()?
                .block_on(async {
                    let storage = ssm_audit::aws::storage_for(&location, &aws, &s3).await?;
                    let report = verify::verify(&storage).await?;
                    println!("{report}");
                    if !report.is_clean() {
                        return Err(VerifyError::Differences.into());
                    }
                    Ok::<_, anyhow::Error>(())
                })
                .with_context(|| format!("verify of {location}"))
        }
        Command::Report(args) => {
            let config = ReportConfig::from_args(&args)?;
            let input = config.input.to_string();
            runtime()?
                .block_on(report::run(config))
                .with_context(|| format!("report from {input} failed"))
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
