//! `ssm-audit`: parse the flags, validate them into a configuration before
//! any AWS call, run, and map the outcome to a documented exit code
//! (`ssm_audit::exit`).

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use ssm_audit::cli::{Cli, Command};
use ssm_audit::config::{CoverageConfig, ExportConfig, VerifyConfig};
use ssm_audit::evidence::coverage::{self, NotCovered};
use ssm_audit::evidence::verify::{self, VerifyError};
use ssm_audit::report::ReportConfig;
use ssm_audit::time::Clock;
use ssm_audit::{exit, export, report, shutdown};

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
        Ok(()) => ExitCode::from(exit::SUCCESS),
        Err(error) => {
            let error_ref: &(dyn std::error::Error + 'static) = error.as_ref();
            eprintln!(
                "ssm-audit: error: {}",
                ssm_audit::text::chain_text(error_ref)
            );
            ExitCode::from(exit::code_of(&error))
        }
    }
}

fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")
}

/// Prints a check's result on stdout, as text or JSON.
fn print_result<R: std::fmt::Display + serde::Serialize>(
    result: &R,
    json: bool,
) -> anyhow::Result<()> {
    if json {
        println!("{}", serde_json::to_string_pretty(result)?);
    } else {
        println!("{result}");
    }
    Ok(())
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Export(args) => {
            let config = ExportConfig::from_args(&args, Clock::system())?;
            let output = config.output.to_string();
            let summary = runtime()?
                .block_on(async {
                    let shutdown = shutdown::cancelled_on_signal(|| {
                        tracing::warn!(
                            "stop requested: abandoning calls in flight, saving the checkpoint"
                        );
                    });
                    export::run(config, shutdown).await
                })
                .with_context(|| format!("export into {output} failed"))?;
            match summary {
                export::RunOutcome::Planned(plan) => println!("{plan}"),
                export::RunOutcome::Exported(summaries) => {
                    for pair in &summaries {
                        eprintln!("ssm-audit: {pair}");
                    }
                    if summaries.len() > 1 {
                        let sessions: u64 = summaries.iter().map(|s| s.sessions.distinct).sum();
                        eprintln!(
                            "ssm-audit: {} (account, region) pairs completed, {sessions} sessions in all",
                            summaries.len()
                        );
                    }
                }
            }
            Ok(())
        }
        Command::Verify(args) => {
            let config = VerifyConfig::from_args(&args)?;
            let report = runtime()?
                .block_on(verify::run(&config))
                .with_context(|| format!("verify of {}", config.output))?;
            print_result(&report, config.json)?;
            if !report.is_clean() {
                return Err(VerifyError::Differences.into());
            }
            Ok(())
        }
        Command::Coverage(args) => {
            let config = CoverageConfig::from_args(&args)?;
            let report = runtime()?
                .block_on(coverage::run(&config))
                .with_context(|| format!("coverage of {}", config.output))?;
            print_result(&report, config.json)?;
            if !report.is_complete() {
                return Err(NotCovered.into());
            }
            Ok(())
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
