//! `ssm-audit`: parse the flags, validate them into a configuration before
//! any AWS call, run, and map the outcome to a documented exit code
//! (`ssm_audit::exit`).

use std::process::ExitCode;

use anyhow::Context;
use clap::Parser;
use ssm_audit::cli::{Cli, Command, LogFormat};
use ssm_audit::config::{CoverageConfig, ExportConfig, VerifyConfig};
use ssm_audit::evidence::coverage::{self, NotCovered};
use ssm_audit::evidence::verify::{self, VerifyError};
use ssm_audit::export::metrics;
use ssm_audit::report::ReportConfig;
use ssm_audit::time::Clock;
use ssm_audit::{exit, export, report, shutdown};

fn main() -> ExitCode {
    ssm_audit::allocator::return_large_blocks_when_freed();
    let cli = Cli::parse();
    let filter = tracing_subscriber::EnvFilter::try_from_env("SSM_AUDIT_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn,ssm_audit=info"));
    let logs = tracing_subscriber::fmt()
        .with_writer(ssm_audit::progress::LogWriter)
        .with_target(false)
        .with_env_filter(filter);
    match cli.log_format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
            .init(),
        // The pair's span (run id, account, region) rides on every line.
        LogFormat::Json => logs
            .json()
            .flatten_event(true)
            .with_current_span(true)
            .with_span_list(false)
            .init(),
    }
    let log_format = cli.log_format;
    match run(cli) {
        Ok(()) => ExitCode::from(exit::SUCCESS),
        Err(error) => {
            let error_ref: &(dyn std::error::Error + 'static) = error.as_ref();
            let text = ssm_audit::text::chain_text(error_ref);
            let code = exit::code_of(&error);
            match log_format {
                LogFormat::Text => eprintln!("ssm-audit: error: {text}"),
                LogFormat::Json => {
                    let mut line = json_line("ERROR", &text);
                    line["exit_code"] = code.into();
                    eprintln!("{line}");
                }
            }
            ExitCode::from(code)
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

/// The run's last words on stderr: a line of text, or with
/// `--log-format json` an object like every other log line.
fn say(format: LogFormat, message: &str) {
    match format {
        LogFormat::Text => eprintln!("ssm-audit: {message}"),
        LogFormat::Json => eprintln!("{}", json_line("INFO", message)),
    }
}

/// A log line of main's own, shaped like the tracing subscriber's JSON.
fn json_line(level: &str, message: &str) -> serde_json::Value {
    serde_json::json!({
        "timestamp": chrono::Utc::now().to_rfc3339_opts(chrono::SecondsFormat::Micros, true),
        "level": level,
        "message": message,
    })
}

fn run(cli: Cli) -> anyhow::Result<()> {
    let log_format = cli.log_format;
    match cli.command {
        Command::Export(args) => {
            let config = ExportConfig::from_args(&args, Clock::system())?;
            let output = config.output.to_string();
            let clock = config.clock;
            let started = std::time::Instant::now();
            let outcome = runtime()?.block_on(async {
                let shutdown = shutdown::cancelled_on_signal(|| {
                    tracing::warn!(
                        "stop requested: abandoning calls in flight, saving the checkpoint"
                    );
                });
                export::run(config, shutdown).await
            });
            // The metrics of every run, failed ones included, for alarms.
            // The run's clock: coverage ages compare with its windows.
            let ended_ms = clock.now_ms();
            for line in metrics::emf_lines(&outcome, started.elapsed().as_secs_f64(), ended_ms) {
                println!("{line}");
            }
            match outcome.with_context(|| format!("export into {output} failed"))? {
                export::RunOutcome::Planned(plan) => println!("{plan}"),
                export::RunOutcome::Exported(summaries) => {
                    for pair in &summaries {
                        say(log_format, &pair.to_string());
                    }
                    if summaries.len() > 1 {
                        let sessions: u64 = summaries.iter().map(|s| s.sessions.distinct).sum();
                        say(
                            log_format,
                            &format!(
                                "{} (account, region) pairs completed, {sessions} sessions in all",
                                summaries.len()
                            ),
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
