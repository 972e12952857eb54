//! The command line exactly as typed: clap definitions, one environment
//! variable (`SSM_AUDIT_…`) per flag so an ECS task definition can configure
//! the job without a shell. Nothing here is validated beyond its type;
//! [`crate::config`] turns it into a checked configuration.

use clap::{Args, Parser, Subcommand, ValueEnum};

#[derive(Debug, Parser)]
#[command(
    name = "ssm-audit",
    version,
    about = "Keeps a permanent, queryable record of SSM Session Manager sessions",
    after_help = "Exit codes: 0 success, 1 failure (AWS, storage), 2 invalid flags or configuration, \
                  3 crawl incomplete (rerun to resume), 4 interrupted by a signal (rerun to resume), \
                  5 another run holds the output lock (or took it over), 6 verify found differences \
                  (files, manifests, chain heads, signatures), 7 partial: pairs that failed, or partitions \
                  that could not be read, named (the rest published), 8 coverage found a gap or a stale \
                  chain. See README.md."
)]
pub struct Cli {
    #[command(subcommand)]
    pub command: Command,

    /// Log lines (stderr) as text, or one JSON object per line with the run
    /// id, account, region and the event's fields, for CloudWatch Logs
    /// Insights.
    #[arg(long, global = true, env = "SSM_AUDIT_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Crawl DescribeSessions over a time window into partitioned Parquet.
    Export(Box<ExportArgs>),
    /// Check the manifest chains, their signatures and every data file
    /// against the run manifests that wrote it.
    Verify(VerifyArgs),
    /// List, per account and region, the time completed runs crawled and
    /// every gap; fail when there is a gap or the newest run is too old.
    Coverage(CoverageArgs),
    /// Write an auditor's report (HTML, CSV or JSON) from the data set.
    Report(ReportArgs),
}

/// How to reach AWS; unset values come from the standard AWS configuration.
#[derive(Debug, Args)]
pub struct AwsArgs {
    /// AWS region (default: the standard AWS configuration, e.g. AWS_REGION).
    #[arg(long, env = "SSM_AUDIT_REGION")]
    pub region: Option<String>,

    /// Named profile from the AWS config files.
    #[arg(long, env = "SSM_AUDIT_PROFILE")]
    pub profile: Option<String>,

    /// Endpoint URL for every AWS service the job calls (also AWS_ENDPOINT_URL,
    /// AWS_ENDPOINT_URL_SSM, AWS_ENDPOINT_URL_STS).
    #[arg(long, env = "SSM_AUDIT_ENDPOINT_URL", value_name = "URL")]
    pub endpoint_url: Option<String>,

    /// Attempts per AWS call, retries included. Default: AWS_MAX_ATTEMPTS when
    /// set, otherwise 10, because throttled nightly crawls need more than the
    /// SDK's 3.
    #[arg(long, env = "SSM_AUDIT_MAX_ATTEMPTS", value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_attempts: Option<u32>,

    /// How long to wait for a connection to an AWS endpoint (the AWS CLI's
    /// --cli-connect-timeout). Default 5s.
    #[arg(long, env = "SSM_AUDIT_CONNECT_TIMEOUT", value_name = "DURATION", value_parser = positive_duration)]
    pub connect_timeout: Option<std::time::Duration>,

    /// How long to wait for an answer's bytes once connected (the AWS CLI's
    /// --cli-read-timeout). Default: the SDK's.
    #[arg(long, env = "SSM_AUDIT_READ_TIMEOUT", value_name = "DURATION", value_parser = positive_duration)]
    pub read_timeout: Option<std::time::Duration>,

    /// PEM file of certificates to trust beside the system's, for every AWS
    /// call: the CA of a TLS-intercepting proxy or of a private endpoint (the
    /// AWS CLI's --ca-bundle). The proxy itself comes from HTTPS_PROXY,
    /// HTTP_PROXY and NO_PROXY.
    #[arg(long, env = "AWS_CA_BUNDLE", value_name = "FILE")]
    pub ca_bundle: Option<std::path::PathBuf>,

    /// Address buckets by path (`endpoint/bucket/key`), as S3-compatible
    /// stores often need.
    #[arg(long, env = "SSM_AUDIT_S3_FORCE_PATH_STYLE")]
    pub s3_force_path_style: bool,
}

#[derive(Debug, Args)]
pub struct VerifyArgs {
    /// The data set to check: a directory or `s3://bucket/prefix`.
    #[arg(long, env = "SSM_AUDIT_OUTPUT", value_name = "DIR|s3://BUCKET/PREFIX")]
    pub output: String,

    #[command(flatten)]
    pub keys: VerifyKeyArgs,

    /// Print the findings as text, or everything (chains, files with their
    /// object versions, findings) as JSON.
    #[arg(long, env = "SSM_AUDIT_FORMAT", value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,

    #[command(flatten)]
    pub aws: AwsArgs,
}

/// What `verify` (and the report's verification) holds the data set to,
/// beyond its own manifests.
#[derive(Debug, Args)]
pub struct VerifyKeyArgs {
    /// A chain head kept apart from the bucket (what `--chain-head-out`
    /// wrote, or the head an export printed): the chain must still reach it
    /// unchanged. `ACCOUNT/REGION=SEQUENCE:SHA256`, or `SEQUENCE:SHA256`
    /// when the data set has one chain. Repeatable.
    #[arg(
        long,
        env = "SSM_AUDIT_EXPECT_HEAD",
        value_name = "[ACCOUNT/REGION=]SEQ:SHA256",
        value_delimiter = ';'
    )]
    pub expect_head: Vec<String>,

    /// Check every manifest's signature with this public key (PEM `BEGIN
    /// PUBLIC KEY`, or the DER `aws kms get-public-key` returns).
    #[arg(
        long,
        env = "SSM_AUDIT_PUBLIC_KEY",
        value_name = "FILE",
        conflicts_with = "kms_key"
    )]
    pub public_key: Option<std::path::PathBuf>,

    /// Check every manifest's signature with this KMS key's public key
    /// (needs only kms:GetPublicKey).
    #[arg(long, env = "SSM_AUDIT_KMS_KEY", value_name = "KEY")]
    pub kms_key: Option<String>,
}

/// How a check prints what it found.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OutputFormat {
    Text,
    Json,
}

#[derive(Debug, Args)]
pub struct CoverageArgs {
    /// The data set to check: a directory or `s3://bucket/prefix`.
    #[arg(long, env = "SSM_AUDIT_OUTPUT", value_name = "DIR|s3://BUCKET/PREFIX")]
    pub output: String,

    /// First day (UTC, inclusive) that must be covered; default: the first
    /// day any run crawled.
    #[arg(long, env = "SSM_AUDIT_FROM", value_name = "DATE")]
    pub from: Option<String>,

    /// Last day (UTC, inclusive) that must be covered; default: up to the
    /// end of the newest run's window.
    #[arg(long, env = "SSM_AUDIT_TO", value_name = "DATE")]
    pub to: Option<String>,

    /// The newest completed run may be at most this old, for example 36h.
    #[arg(
        long,
        env = "SSM_AUDIT_MAX_AGE",
        value_name = "DURATION",
        default_value = "36h"
    )]
    pub max_age: String,

    #[arg(long, env = "SSM_AUDIT_FORMAT", value_enum, default_value_t = OutputFormat::Text)]
    pub format: OutputFormat,

    #[command(flatten)]
    pub aws: AwsArgs,

    /// Read "now" as this RFC 3339 instant. For tests.
    #[arg(long, env = "SSM_AUDIT_CLOCK_START", value_name = "TIME", hide = true)]
    pub clock_start: Option<String>,
}

/// Which (account, region) pairs an export crawls, how it reaches them, and
/// which share of them this process takes.
#[derive(Debug, Args)]
pub struct ScopeArgs {
    /// Accounts to crawl, comma-separated (default: the caller's account).
    /// Needs --role-name or --role-arn-template for accounts other than the
    /// caller's.
    #[arg(
        long,
        env = "SSM_AUDIT_ACCOUNTS",
        value_name = "ID,...",
        value_delimiter = ',',
        conflicts_with = "accounts_file"
    )]
    pub accounts: Vec<String>,

    /// A file of account ids, one per line (`#` starts a comment).
    #[arg(long, env = "SSM_AUDIT_ACCOUNTS_FILE", value_name = "FILE")]
    pub accounts_file: Option<std::path::PathBuf>,

    /// Every active account of the caller's AWS Organization
    /// (organizations:ListAccounts); suspended accounts are skipped and listed.
    #[arg(long, env = "SSM_AUDIT_ORGANIZATION", conflicts_with_all = ["accounts", "accounts_file"])]
    pub organization: bool,

    /// With --organization: only accounts below these organizational units
    /// (at any depth). Repeatable, or comma-separated.
    #[arg(
        long,
        env = "SSM_AUDIT_INCLUDE_OU",
        value_name = "OU_ID",
        value_delimiter = ',',
        requires = "organization"
    )]
    pub include_ou: Vec<String>,

    /// With --organization: no account below these organizational units.
    #[arg(
        long,
        env = "SSM_AUDIT_EXCLUDE_OU",
        value_name = "OU_ID",
        value_delimiter = ',',
        requires = "organization"
    )]
    pub exclude_ou: Vec<String>,

    /// Accounts to leave out, whatever listed them.
    #[arg(
        long,
        env = "SSM_AUDIT_EXCLUDE_ACCOUNTS",
        value_name = "ID,...",
        value_delimiter = ','
    )]
    pub exclude_accounts: Vec<String>,

    /// The role to assume in each account: `arn:aws:iam::<account>:role/<NAME>`.
    #[arg(
        long,
        env = "SSM_AUDIT_ROLE_NAME",
        value_name = "NAME",
        conflicts_with = "role_arn_template"
    )]
    pub role_name: Option<String>,

    /// The role to assume as an ARN with `{account}` in it, for roles on a
    /// path: `arn:aws:iam::{account}:role/audit/ssm-audit`.
    #[arg(long, env = "SSM_AUDIT_ROLE_ARN_TEMPLATE", value_name = "ARN")]
    pub role_arn_template: Option<String>,

    /// The external id the roles' trust policy requires.
    #[arg(long, env = "SSM_AUDIT_EXTERNAL_ID", value_name = "ID")]
    pub external_id: Option<String>,

    /// The session name CloudTrail shows for the assumed roles.
    #[arg(
        long,
        env = "SSM_AUDIT_ROLE_SESSION_NAME",
        value_name = "NAME",
        default_value = "ssm-audit"
    )]
    pub role_session_name: String,

    /// How long assumed-role credentials last (15m to 12h); they are renewed
    /// before they expire.
    #[arg(
        long,
        env = "SSM_AUDIT_ROLE_DURATION",
        value_name = "DURATION",
        default_value = "1h"
    )]
    pub role_duration: String,

    /// Regions to crawl, comma-separated. Default: the configured region.
    #[arg(
        long,
        env = "SSM_AUDIT_REGIONS",
        value_name = "REGION,...",
        value_delimiter = ','
    )]
    pub regions: Vec<String>,

    /// Take shard K of N (1-based): a stable, balanced share of the pairs,
    /// by a hash of account and region, so N tasks split the work with no
    /// coordination. Default: AWS_BATCH_JOB_ARRAY_INDEX of
    /// AWS_BATCH_JOB_ARRAY_SIZE when AWS Batch sets them, else all pairs.
    #[arg(long, env = "SSM_AUDIT_SHARD", value_name = "K/N")]
    pub shard: Option<String>,

    /// (Account, region) pairs crawled at once; their requests share the
    /// one --concurrency bound. Default: --concurrency.
    #[arg(long, env = "SSM_AUDIT_PAIRS_AT_ONCE", value_name = "N",
          value_parser = clap::value_parser!(u16).range(1..=1024))]
    pub pairs_at_once: Option<u16>,

    /// Print the plan (pairs, windows, expected calls) and exit without
    /// calling SSM.
    #[arg(long, env = "SSM_AUDIT_DRY_RUN")]
    pub dry_run: bool,

    /// After a run that left pairs failed, a rerun within this time crawls
    /// only those pairs (a scheduler's retry); later, all pairs again.
    #[arg(
        long,
        env = "SSM_AUDIT_RETRY_WINDOW",
        value_name = "DURATION",
        default_value = "6h"
    )]
    pub retry_window: String,
}

/// How an export signs its manifests and where it keeps the chain's head.
#[derive(Debug, Args)]
pub struct EvidenceArgs {
    /// Sign each run manifest with this asymmetric KMS key (id, ARN or
    /// alias; key usage SIGN_VERIFY). The job needs kms:Sign only.
    #[arg(
        long,
        env = "SSM_AUDIT_SIGN_KMS_KEY",
        value_name = "KEY",
        conflicts_with = "sign_key_file"
    )]
    pub sign_kms_key: Option<String>,

    /// The KMS signing algorithm: ECDSA_SHA_256 for an ECC_NIST_P256 key,
    /// RSASSA_PKCS1_V1_5_SHA_256 or RSASSA_PSS_SHA_256 for an RSA key.
    #[arg(long, env = "SSM_AUDIT_SIGN_KMS_ALGORITHM", value_name = "ALGORITHM",
          default_value = "ECDSA_SHA_256",
          value_parser = ["ECDSA_SHA_256", "RSASSA_PKCS1_V1_5_SHA_256", "RSASSA_PSS_SHA_256"])]
    pub sign_kms_algorithm: String,

    /// Sign each run manifest with the Ed25519 private key in this PEM file
    /// (`openssl genpkey -algorithm ed25519`), for hosts without KMS.
    #[arg(long, env = "SSM_AUDIT_SIGN_KEY_FILE", value_name = "FILE")]
    pub sign_key_file: Option<std::path::PathBuf>,

    /// After each run, write the chain's new head here, apart from the
    /// output (a file, or `s3://bucket/key` in another bucket):
    /// `verify --expect-head` proves later that nothing after it was removed.
    #[arg(
        long,
        env = "SSM_AUDIT_CHAIN_HEAD_OUT",
        value_name = "FILE|s3://BUCKET/KEY"
    )]
    pub chain_head_out: Option<String>,
}

/// Report formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ReportFormat {
    Html,
    Csv,
    Json,
}

#[derive(Debug, Args)]
pub struct ReportArgs {
    /// The data set to read: a directory or `s3://bucket/prefix`.
    #[arg(long, env = "SSM_AUDIT_INPUT", value_name = "DIR|s3://BUCKET/PREFIX")]
    pub input: String,

    /// First day of the period (UTC, inclusive), for example 2026-07-01.
    #[arg(long, env = "SSM_AUDIT_FROM", value_name = "DATE")]
    pub from: Option<String>,

    /// Last day of the period (UTC, inclusive), for example 2026-09-30.
    #[arg(long, env = "SSM_AUDIT_TO", value_name = "DATE")]
    pub to: Option<String>,

    /// Only sessions of this owner ARN (repeatable).
    #[arg(long, env = "SSM_AUDIT_OWNER", value_delimiter = ';')]
    pub owner: Vec<String>,

    /// Only sessions on this target (repeatable).
    #[arg(long, env = "SSM_AUDIT_TARGET", value_delimiter = ';')]
    pub target: Vec<String>,

    #[arg(long, env = "SSM_AUDIT_FORMAT", value_enum, default_value_t = ReportFormat::Html)]
    pub format: ReportFormat,

    /// Where to write the report: a file, or `s3://bucket/key`.
    #[arg(long, env = "SSM_AUDIT_OUT", value_name = "FILE|s3://BUCKET/KEY")]
    pub out: String,

    #[command(flatten)]
    pub keys: VerifyKeyArgs,

    /// With an s3:// --out, print a presigned download link valid this long
    /// (at most 7d), for auditors without AWS access.
    #[arg(long, env = "SSM_AUDIT_PRESIGN", value_name = "DURATION")]
    pub presign: Option<String>,

    #[command(flatten)]
    pub aws: AwsArgs,

    #[command(flatten)]
    pub s3_write: S3WriteArgs,
}

/// Which DescribeSessions lists to crawl.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StateArg {
    Active,
    History,
    All,
}

#[derive(Debug, Args)]
pub struct ExportArgs {
    /// Where the data set lives: a directory (created if missing) or
    /// `s3://bucket/prefix`.
    #[arg(long, env = "SSM_AUDIT_OUTPUT", value_name = "DIR|s3://BUCKET/PREFIX")]
    pub output: String,

    /// Which session lists to crawl.
    #[arg(long, env = "SSM_AUDIT_STATE", value_enum, default_value_t = StateArg::All)]
    pub state: StateArg,

    /// How far back from now to crawl, for example `30d` or `36h`.
    #[arg(
        long,
        env = "SSM_AUDIT_LOOKBACK",
        value_name = "DURATION",
        conflicts_with = "since"
    )]
    pub lookback: Option<String>,

    /// Start of the window (ISO-8601 UTC: `2026-11-01` or `2026-11-01T06:00:00Z`), inclusive.
    #[arg(long, env = "SSM_AUDIT_SINCE", value_name = "TIME")]
    pub since: Option<String>,

    /// End of the window (ISO-8601 UTC), exclusive; default now.
    #[arg(long, env = "SSM_AUDIT_UNTIL", value_name = "TIME")]
    pub until: Option<String>,

    /// The narrowest InvokedAfter/InvokedBefore window the crawl splits a
    /// heavy window into, for example `1m`. The crawl starts with one window
    /// per state and splits only where the data is.
    #[arg(
        long,
        env = "SSM_AUDIT_SLICE",
        value_name = "DURATION",
        default_value = "1m"
    )]
    pub slice: String,

    /// DescribeSessions requests in flight at once, across all windows.
    #[arg(long, env = "SSM_AUDIT_CONCURRENCY", default_value_t = 4,
          value_parser = clap::value_parser!(u16).range(1..=64))]
    pub concurrency: u16,

    /// MaxResults of each DescribeSessions request (1..200).
    #[arg(long, env = "SSM_AUDIT_PAGE_SIZE", default_value_t = 200,
          value_parser = clap::value_parser!(u16).range(1..=200))]
    pub page_size: u16,

    /// A DescribeSessions filter in the AWS CLI's shorthand, for example
    /// `key=Owner,value=arn:aws:iam::123456789012:user/alice`. Keys: Target,
    /// Owner, Status, AccessType, SessionId. Repeatable; in the environment, separate
    /// filters with `;`.
    #[arg(long = "filters", env = "SSM_AUDIT_FILTERS", value_name = "key=K,value=V",
          num_args = 1.., value_delimiter = ';')]
    pub filters: Vec<String>,

    /// Account id of the crawled sessions; default: sts:GetCallerIdentity.
    #[arg(long, env = "SSM_AUDIT_ACCOUNT_ID")]
    pub account_id: Option<String>,

    /// Folder of the crawl checkpoints and their staged pages; default
    /// `<output>/_checkpoint`. A killed run resumes from it.
    #[arg(
        long,
        env = "SSM_AUDIT_CHECKPOINT",
        value_name = "DIR|s3://BUCKET/PREFIX"
    )]
    pub checkpoint: Option<String>,

    #[command(flatten)]
    pub aws: AwsArgs,

    #[command(flatten)]
    pub s3_write: S3WriteArgs,

    #[command(flatten)]
    pub evidence: EvidenceArgs,

    #[command(flatten)]
    pub scope: ScopeArgs,

    /// Discard an unfinished checkpoint (and its staged pages) and crawl
    /// afresh, for example after changing flags or when it is corrupt.
    #[arg(long, env = "SSM_AUDIT_RESTART")]
    pub restart: bool,

    /// How progress is shown on stderr: `auto` draws a bar on a terminal and
    /// writes a plain log line every --progress-interval otherwise
    /// (container logs); `bar`, `lines` or `off` choose.
    #[arg(long, env = "SSM_AUDIT_PROGRESS", value_enum, default_value_t = ProgressArg::Auto)]
    pub progress: ProgressArg,

    /// Time between two progress lines.
    #[arg(long, env = "SSM_AUDIT_PROGRESS_INTERVAL", value_name = "DURATION", default_value = "30s", value_parser = positive_duration)]
    pub progress_interval: std::time::Duration,

    /// Start the run's clock at this RFC 3339 instant (it then advances in
    /// real time). For tests, so that nothing depends on the hour they run.
    #[arg(long, env = "SSM_AUDIT_CLOCK_START", value_name = "TIME", hide = true)]
    pub clock_start: Option<String>,

    /// The output lock's lease (renewed every third of it; a lock unchanged
    /// for a whole lease is taken over). For tests, which cannot wait a
    /// minute for a takeover.
    #[arg(
        long,
        env = "SSM_AUDIT_LOCK_LEASE",
        value_name = "DURATION",
        default_value = "60s",
        hide = true
    )]
    pub lock_lease: String,
}

/// How objects written to S3 are encrypted (export and report).
#[derive(Debug, Args)]
pub struct S3WriteArgs {
    /// Server-side encryption of every object written to S3.
    #[arg(long, env = "SSM_AUDIT_SSE", value_enum)]
    pub sse: Option<SseArg>,

    /// KMS key (id, ARN or alias) for `--sse aws:kms`; default: the bucket's.
    #[arg(long, env = "SSM_AUDIT_SSE_KMS_KEY_ID", value_name = "KEY")]
    pub sse_kms_key_id: Option<String>,
}

/// How progress is shown (`--progress`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ProgressArg {
    Auto,
    Bar,
    Lines,
    Off,
}

/// Server-side encryption for S3 uploads.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SseArg {
    #[value(name = "AES256")]
    Aes256,
    #[value(name = "aws:kms")]
    AwsKms,
}

/// A duration above zero, such as `500ms` or `30s`.
fn positive_duration(text: &str) -> Result<std::time::Duration, String> {
    match humantime::parse_duration(text) {
        Ok(d) if !d.is_zero() => Ok(d),
        Ok(_) => Err("must be above zero".into()),
        Err(e) => Err(format!("{e}; write a duration such as 500ms or 30s")),
    }
}
