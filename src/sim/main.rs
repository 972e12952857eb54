//! `ssm-sim`: a local stand-in for the SSM DescribeSessions endpoint (and
//! `sts:GetCallerIdentity`) that real AWS clients cannot tell from the service
//! for this operation. Tests, benchmarks and `make demo` stand on it. `serve`
//! runs it, `generate` writes the data set it would serve as JSON Lines.
//!
//! The simulator is its own binary crate: the product (`ssm_audit`) never
//! depends on it, and `tests/it/tidy.rs` keeps it so. It shares only the API's
//! facts (`ssm_audit::api`).
//!
//! - [`model`]: the wire shape of a session, shared with data files.
//! - [`data`]: seeded generation and JSON Lines loading.
//! - [`store`]: the query engine (filters, order, tokens, retention, churn).
//! - [`server`]: HTTP routing, fault injection and statistics.

use std::io::Write;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use anyhow::{bail, Context};
use clap::{Args, Parser, Subcommand};

mod data;
mod model;
mod server;
mod store;
mod tenants;

use data::GenerateSpec;
use server::{FaultOptions, Server, ServerOptions};
use store::{BoundaryMode, QueryOptions, ResultOrder, Store, TokenFault};

#[derive(Debug, Parser)]
#[command(
    name = "ssm-sim",
    version,
    about = "A local simulator of SSM DescribeSessions and STS GetCallerIdentity"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve DescribeSessions on a loopback port until SIGINT or SIGTERM.
    Serve(Box<ServeArgs>),
    /// Write the generated data set as JSON Lines (the API's session shape).
    Generate(GenerateArgs),
}

#[derive(Debug, Args)]
struct DataArgs {
    /// Serve the sessions in this JSON Lines file instead of generating them.
    #[arg(long, value_name = "PATH")]
    data: Option<PathBuf>,
    /// How many sessions to generate.
    #[arg(long, default_value_t = 1000)]
    sessions: usize,
    /// Seed of the generator: the same seed gives the same sessions.
    #[arg(long, default_value_t = 1)]
    seed: u64,
    /// Share (0..1) of generated sessions inside one hour of the window.
    #[arg(long, default_value_t = 0.0)]
    skew_share: f64,
    /// How many bursts of sessions sharing one StartDate to generate.
    #[arg(long, default_value_t = 1)]
    bursts: usize,
    /// Sessions in each burst.
    #[arg(long, default_value_t = 50)]
    burst_size: usize,
    /// Share (0..1) of generated sessions still active.
    #[arg(long, default_value_t = 0.03)]
    active_share: f64,
    /// The account id in generated owner ARNs and in GetCallerIdentity.
    #[arg(long, default_value = "123456789012")]
    account_id: String,
    /// The time generated data ends at (RFC 3339); default: the simulator's now.
    #[arg(long, value_name = "RFC3339")]
    now: Option<String>,
    /// Added to this machine's clock to give the simulator's clock, for
    /// example `-3d` or `90m`.
    #[arg(long, default_value = "0s", allow_hyphen_values = true)]
    clock_offset: String,
    /// Start the simulator's clock at this instant (RFC 3339); it then
    /// advances in real time, shifted by any --clock-offset. Tests pin it so
    /// that nothing depends on the hour they run at.
    #[arg(long, value_name = "RFC3339")]
    clock_start: Option<String>,
}

#[derive(Debug, Args)]
struct ServeArgs {
    /// Other accounts to serve (JSON: the role they trust, an external id,
    /// each account's data per region, regions not enabled); calls signed
    /// with an assumed role's credentials get that account's data.
    #[arg(long, value_name = "PATH")]
    accounts_file: Option<PathBuf>,

    /// Address to listen on; port 0 picks a free port.
    #[arg(long, default_value = "127.0.0.1:0")]
    listen: SocketAddr,
    /// Also write the endpoint URL to this file once listening (written
    /// atomically, so a reader polling for it never sees half a line).
    #[arg(long, value_name = "PATH")]
    addr_file: Option<PathBuf>,
    /// Serve HTTPS with this PEM certificate chain (with --tls-key), so that
    /// clients must trust its CA (ssm-audit's --ca-bundle).
    #[arg(long, value_name = "PEM", requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// The PEM private key of --tls-cert.
    #[arg(long, value_name = "PEM", requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Append each AWS operation served to this file: `service:Operation`,
    /// the caller's `app/` name, and `caller` or `assumed` (a role's
    /// credentials), tab-separated.
    #[arg(long, value_name = "PATH")]
    operations_log: Option<PathBuf>,
    #[command(flatten)]
    data: DataArgs,
    /// Fixed latency added to every DescribeSessions call.
    #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration)]
    latency: Duration,
    /// Random extra latency, uniform between 0 and this.
    #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration)]
    jitter: Duration,
    /// Sustained DescribeSessions calls per second before ThrottlingException.
    #[arg(long, value_name = "PER_SECOND")]
    rate_limit: Option<f64>,
    /// Calls that may arrive at once under the rate limit (token bucket size).
    #[arg(long, default_value_t = 5.0)]
    burst: f64,
    /// How long a ThrottlingException takes to come back (a network round
    /// trip; by default at once).
    #[arg(long, default_value = "0ms", value_parser = humantime::parse_duration)]
    throttle_latency: Duration,
    /// Share (0..1) of calls answered with InternalServerError (HTTP 500).
    #[arg(long, default_value_t = 0.0)]
    error_share: f64,
    /// Share (0..1) of calls whose connection is dropped without an answer.
    #[arg(long, default_value_t = 0.0)]
    drop_share: f64,
    /// MaxResults counts items scanned before filters, so pages come back
    /// short or empty with a NextToken, as real SSM Describe calls do.
    #[arg(long)]
    limit_before_filter: bool,
    /// How long a NextToken stays valid.
    #[arg(long, default_value = "1h", value_parser = humantime::parse_duration)]
    token_lifetime: Duration,
    /// How InvokedAfter and InvokedBefore treat a session exactly on the bound.
    #[arg(long, value_enum, default_value_t = BoundaryMode::Documented)]
    boundary_mode: BoundaryMode,
    /// The order sessions are listed in (AWS documents none).
    #[arg(long, value_enum, default_value_t = ResultOrder::NewestFirst)]
    order: ResultOrder,
    /// Pagination the way a broken service does it.
    #[arg(long, value_enum, default_value_t = TokenFault::None)]
    token_fault: TokenFault,
    /// Every N DescribeSessions calls, one Active session ends and a new one
    /// starts (0: the data never changes).
    #[arg(long, default_value_t = 0)]
    churn_every: u64,
}

#[derive(Debug, Args)]
struct GenerateArgs {
    #[command(flatten)]
    data: DataArgs,
    /// Where to write; `-` for standard output.
    #[arg(long, default_value = "-")]
    out: PathBuf,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("SSM_SIM_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .init();
    let result = match cli.command {
        Command::Serve(args) => serve(*args),
        Command::Generate(args) => generate(args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("ssm-sim: error: {error:#}");
            ExitCode::from(2)
        }
    }
}

fn signed_duration_ms(text: &str) -> anyhow::Result<i64> {
    let (sign, rest) = match text.strip_prefix('-') {
        Some(rest) => (-1, rest),
        None => (1, text.strip_prefix('+').unwrap_or(text)),
    };
    let duration = humantime::parse_duration(rest)
        .with_context(|| format!("--clock-offset {text:?} is not a duration such as 90m or -3d"))?;
    Ok(sign * duration.as_millis() as i64)
}

/// Milliseconds added to this machine's clock to give the simulator's.
fn clock_offset_ms(args: &DataArgs) -> anyhow::Result<i64> {
    let start_shift = match &args.clock_start {
        Some(text) => rfc3339_ms("--clock-start", text)? - chrono::Utc::now().timestamp_millis(),
        None => 0,
    };
    Ok(start_shift + signed_duration_ms(&args.clock_offset)?)
}

fn rfc3339_ms(flag: &str, text: &str) -> anyhow::Result<i64> {
    Ok(chrono::DateTime::parse_from_rfc3339(text)
        .with_context(|| {
            format!("{flag} {text:?} is not an RFC 3339 time such as 2026-11-01T00:00:00Z")
        })?
        .timestamp_millis())
}

fn share(name: &str, value: f64) -> anyhow::Result<f64> {
    if !(0.0..=1.0).contains(&value) {
        bail!("--{name} {value} must be a share between 0 and 1");
    }
    Ok(value)
}

fn load_sessions(args: &DataArgs) -> anyhow::Result<Vec<model::SimSession>> {
    if let Some(path) = &args.data {
        return Ok(data::load_jsonl(path)?);
    }
    let now_ms = match &args.now {
        Some(text) => rfc3339_ms("--now", text)?,
        None => chrono::Utc::now().timestamp_millis() + clock_offset_ms(args)?,
    };
    Ok(data::generate(&GenerateSpec {
        count: args.sessions,
        seed: args.seed,
        now_ms,
        account_id: args.account_id.clone(),
        skew_share: share("skew-share", args.skew_share)?,
        bursts: args.bursts,
        burst_size: args.burst_size,
        active_share: share("active-share", args.active_share)?,
    }))
}

fn generate(args: GenerateArgs) -> anyhow::Result<()> {
    let sessions = load_sessions(&args.data)?;
    let mut out: Box<dyn Write> = if args.out.as_os_str() == "-" {
        Box::new(std::io::stdout().lock())
    } else {
        let file = std::fs::File::create(&args.out)
            .with_context(|| format!("cannot create {}", args.out.display()))?;
        Box::new(std::io::BufWriter::new(file))
    };
    for session in &sessions {
        serde_json::to_writer(&mut out, session)?;
        out.write_all(b"\n")?;
    }
    out.flush()
        .with_context(|| format!("cannot write {}", args.out.display()))?;
    Ok(())
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    share("error-share", args.error_share)?;
    share("drop-share", args.drop_share)?;
    if args.rate_limit.is_some_and(|r| r <= 0.0) || args.burst < 1.0 {
        bail!("--rate-limit must be above 0 and --burst at least 1");
    }
    let sessions = load_sessions(&args.data)?;
    let count = sessions.len();
    let store = Store::new(sessions);
    let tenants = match &args.accounts_file {
        Some(path) => {
            let now_ms = chrono::Utc::now().timestamp_millis() + clock_offset_ms(&args.data)?;
            Some(tenants::Tenants::load(path, now_ms)?)
        }
        None => None,
    };
    let options = ServerOptions {
        query: QueryOptions {
            boundary_mode: args.boundary_mode,
            order: args.order,
            limit_before_filter: args.limit_before_filter,
            token_lifetime_ms: args.token_lifetime.as_millis() as i64,
            token_fault: args.token_fault,
        },
        faults: FaultOptions {
            latency: args.latency,
            jitter: args.jitter,
            rate_limit: args.rate_limit,
            burst: args.burst,
            throttle_latency: args.throttle_latency,
            error_share: args.error_share,
            drop_share: args.drop_share,
            churn_every: args.churn_every,
        },
        clock_offset_ms: clock_offset_ms(&args.data)?,
        account_id: args.data.account_id.clone(),
        seed: args.data.seed,
        operations_log: match &args.operations_log {
            Some(path) => Some(std::sync::Arc::new(
                std::fs::OpenOptions::new()
                    .create(true)
                    .append(true)
                    .open(path)
                    .with_context(|| format!("cannot open {}", path.display()))?,
            )),
            None => None,
        },
        tls: match (&args.tls_cert, &args.tls_key) {
            (Some(cert), Some(key)) => Some(server::Tls(tls_acceptor(cert, key)?)),
            _ => None,
        },
    };
    let scheme = if options.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    runtime.block_on(async move {
        let server = Server::bind(args.listen, store, tenants, options)
            .await
            .with_context(|| format!("cannot listen on {}", args.listen))?;
        let endpoint = format!("{scheme}://{}", server.local_addr()?);
        println!("{endpoint}");
        std::io::stdout().flush()?;
        if let Some(path) = &args.addr_file {
            let staging = path.with_extension("partial");
            std::fs::write(&staging, format!("{endpoint}\n"))
                .and_then(|()| std::fs::rename(&staging, path))
                .with_context(|| format!("cannot write the endpoint to {}", path.display()))?;
        }
        tracing::info!(%endpoint, sessions = count, "ssm-sim serving DescribeSessions");
        server.serve(shutdown_signal()).await?;
        tracing::info!("ssm-sim stopped");
        Ok(())
    })
}

/// A TLS acceptor for the PEM certificate chain and key.
fn tls_acceptor(cert: &Path, key: &Path) -> anyhow::Result<tokio_rustls::TlsAcceptor> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    use tokio_rustls::rustls;
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(Iterator::collect::<Result<Vec<_>, _>>)
        .with_context(|| format!("cannot read the certificates of {}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read the private key {}", key.display()))?;
    let config = rustls::ServerConfig::builder_with_provider(std::sync::Arc::new(
        rustls::crypto::aws_lc_rs::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .context("TLS versions")?
    .with_no_client_auth()
    .with_single_cert(chain, key)
    .context("the certificate does not match its key")?;
    Ok(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(config)))
}

async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
