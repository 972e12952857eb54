//! Turns the flags as typed ([`crate::cli`]) into a validated
//! [`ExportConfig`], before any AWS call. Every refusal here is a
//! [`ConfigError`], which the binary maps to exit code 2.

use std::path::{Path, PathBuf};

use aws_sdk_ssm::types::SessionFilterKey;
use serde::{Deserialize, Serialize};

use crate::api::{SessionState, ACCESS_TYPES, STATUSES};
use crate::cli::{ExportArgs, S3WriteArgs, SseArg, StateArg};
use crate::dataset::layout::SESSIONS_PREFIX;
use crate::progress::ProgressMode;
use crate::storage::{Sse, StorageError};
use crate::time::{Clock, TimeRange};

/// The shortest `--lock-lease`. Local storage reads a directory again for
/// killed writers' staging files once its last reading is this old: a run
/// takes an output lock over only once the holder's lease has run out, so
/// a holder that died writing there did so at least this long before the
/// taker writes there.
const MIN_LOCK_LEASE_MS: i64 = 100;
const _: () = assert!(crate::storage::STALE_STAGING_REREAD.as_millis() as i64 <= MIN_LOCK_LEASE_MS);

/// How long the service keeps History, in days.
pub const HISTORY_DAYS: i64 = 30;
const DAY_MS: i64 = 86_400_000;

/// A flag or setting that cannot work; the message says which and why.
/// Every variant is exit code 2: the command must change, not the world.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// A flag's value; the message names the flag and what would work.
    #[error("{0}")]
    Flag(String),
    /// An output or checkpoint location that failed its pre-flight.
    #[error("the {flag} location is not usable; {hint}")]
    Unusable {
        flag: &'static str,
        hint: &'static str,
        #[source]
        source: StorageError,
    },
}

/// The AWS settings of a run; anything unset falls back to the standard
/// AWS configuration (environment, profiles).
#[derive(Debug, Clone, Default, Serialize)]
pub struct AwsSettings {
    pub region: Option<String>,
    pub profile: Option<String>,
    /// Recorded in manifests without user info, query or fragment, where a
    /// credential or a signed token could sit.
    #[serde(serialize_with = "serialize_redacted_url")]
    pub endpoint_url: Option<String>,
    pub account_id: Option<String>,
    pub max_attempts: Option<u32>,
    pub connect_timeout: Option<std::time::Duration>,
    pub read_timeout: Option<std::time::Duration>,
    /// How calls leave the machine; not recorded (it says nothing of the data).
    #[serde(skip)]
    pub network: Network,
    /// The subcommand, named in every call's user agent (`app/ssm-audit-export`),
    /// so CloudTrail and the operations log tell the nightly job from an audit.
    #[serde(skip)]
    pub command: &'static str,
}

/// The egress of every AWS call: the proxy the environment names and the
/// certificates trusted beside the system's.
#[derive(Debug, Clone, Default)]
pub struct Network {
    /// `--ca-bundle` / `AWS_CA_BUNDLE`: its path and its PEM certificates,
    /// read and checked before any call.
    pub ca_bundle: Option<CaBundle>,
    /// Whether HTTPS_PROXY, HTTP_PROXY or ALL_PROXY (either case) is set;
    /// NO_PROXY then exempts hosts.
    pub proxy_from_env: bool,
}

#[derive(Debug, Clone)]
pub struct CaBundle {
    pub path: PathBuf,
    pub pem: Vec<u8>,
    pub certificates: usize,
}

/// `--progress auto` is a bar on a terminal and lines everywhere else.
fn progress_mode(asked: crate::cli::ProgressArg, every: std::time::Duration) -> ProgressMode {
    use crate::cli::ProgressArg;
    use std::io::IsTerminal;
    match asked {
        ProgressArg::Auto if std::io::stderr().is_terminal() => ProgressMode::Bar,
        ProgressArg::Auto | ProgressArg::Lines => ProgressMode::Lines(every),
        ProgressArg::Bar => ProgressMode::Bar,
        ProgressArg::Off => ProgressMode::Off,
    }
}

/// The proxy variables, in both cases, that the HTTP client honours.
const PROXY_VARIABLES: [&str; 6] = [
    "HTTPS_PROXY",
    "https_proxy",
    "HTTP_PROXY",
    "http_proxy",
    "ALL_PROXY",
    "all_proxy",
];

impl Network {
    fn from_env(ca_bundle: Option<&Path>) -> Result<Network, ConfigError> {
        let mut proxy_from_env = false;
        for name in PROXY_VARIABLES {
            let Some(value) = std::env::var(name).ok().filter(|v| !v.trim().is_empty()) else {
                continue;
            };
            // A proxy URL the client cannot parse would be ignored without a
            // word, and the night would go out directly or not at all.
            let usable = value.split_once("://").is_none_or(|(scheme, rest)| {
                matches!(scheme, "http" | "https") && !rest.is_empty()
            });
            if !usable {
                return Err(ConfigError::Flag(format!(
                    "{name}={} is not a proxy URL: give http://HOST:PORT (or https://)",
                    redacted_url(&value)
                )));
            }
            proxy_from_env = true;
        }
        let ca_bundle = ca_bundle.map(CaBundle::read).transpose()?;
        Ok(Network {
            ca_bundle,
            proxy_from_env,
        })
    }
}

impl CaBundle {
    fn read(path: &Path) -> Result<CaBundle, ConfigError> {
        use rustls_pki_types::pem::PemObject;
        use rustls_pki_types::CertificateDer;
        let refuse = |why: String| {
            ConfigError::Flag(format!(
                "--ca-bundle {}: {why}; give a PEM file of CA certificates (-----BEGIN CERTIFICATE-----)",
                path.display()
            ))
        };
        let pem = std::fs::read(path).map_err(|e| refuse(e.to_string()))?;
        let certificates = CertificateDer::pem_slice_iter(&pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| refuse(format!("not PEM ({e})")))?
            .len();
        if certificates == 0 {
            return Err(refuse("holds no certificate".into()));
        }
        Ok(CaBundle {
            path: path.to_path_buf(),
            pem,
            certificates,
        })
    }
}

fn serialize_redacted_url<S: serde::Serializer>(
    url: &Option<String>,
    s: S,
) -> Result<S::Ok, S::Error> {
    match url {
        Some(url) => s.serialize_some(&redacted_url(url)),
        None => s.serialize_none(),
    }
}

/// `url` without user info (`user:password@`), query or fragment.
pub fn redacted_url(url: &str) -> String {
    let without_tail = url.split(['?', '#']).next().unwrap_or_default();
    match without_tail.split_once("://") {
        Some((scheme, rest)) => {
            let (authority, path) = match rest.find('/') {
                Some(at) => rest.split_at(at),
                None => (rest, ""),
            };
            let host = authority.rsplit('@').next().unwrap_or(authority);
            format!("{scheme}://{host}{path}")
        }
        None => without_tail.to_owned(),
    }
}

impl AwsSettings {
    pub fn from_args(
        args: &crate::cli::AwsArgs,
        account_id: Option<String>,
        command: &'static str,
    ) -> Result<AwsSettings, ConfigError> {
        Ok(AwsSettings {
            command,
            region: args.region.clone(),
            profile: args.profile.clone(),
            endpoint_url: args.endpoint_url.clone(),
            account_id,
            max_attempts: args.max_attempts,
            connect_timeout: args.connect_timeout,
            read_timeout: args.read_timeout,
            network: Network::from_env(args.ca_bundle.as_deref())?,
        })
    }
}

/// One user filter passed through to DescribeSessions.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct UserFilter {
    pub key: String,
    pub value: String,
}

impl UserFilter {
    pub fn sdk_key(&self) -> SessionFilterKey {
        SessionFilterKey::from(self.key.as_str())
    }
}

/// Where something is stored: a local directory or an S3 bucket and prefix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Location {
    Local(PathBuf),
    S3 { bucket: String, prefix: String },
}

/// Which (account, region) pairs an export crawls and how it reaches them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Scope {
    /// None: the caller's own account (or the organization's accounts).
    pub accounts: Option<Vec<String>>,
    /// Every active account of the caller's organization, filtered by OU.
    pub organization: Option<OrgFilter>,
    pub exclude_accounts: Vec<String>,
    pub role: Option<RoleSpec>,
    /// None: the configured region.
    pub regions: Option<Regions>,
    pub shard: Option<Shard>,
    pub pairs_at_once: usize,
    pub dry_run: bool,
    #[serde(skip)]
    pub retry_window: std::time::Duration,
}

impl Scope {
    /// One pair, the caller's account in the configured region: the export
    /// as it was before organizations (no status file).
    pub fn is_single(&self) -> bool {
        self.accounts.is_none()
            && self.organization.is_none()
            && self.regions.is_none()
            && self.shard.is_none()
            && !self.dry_run
    }
}

/// Which organizational units an organization-wide export keeps.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct OrgFilter {
    /// Empty: every OU.
    pub include_ou: Vec<String>,
    pub exclude_ou: Vec<String>,
}

/// The regions of each account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Regions {
    Listed(Vec<String>),
    /// Each account's enabled regions.
    AllEnabled,
}

/// The role an export assumes in each account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RoleSpec {
    /// An ARN with `{account}` where the account id goes.
    pub arn_template: String,
    pub external_id: Option<String>,
    pub session_name: String,
    pub duration: std::time::Duration,
}

impl RoleSpec {
    pub fn arn(&self, account_id: &str) -> String {
        self.arn_template.replace("{account}", account_id)
    }
}

/// Shard `index` (0-based) of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Shard {
    pub index: u32,
    pub count: u32,
}

impl std::fmt::Display for Shard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.index + 1, self.count)
    }
}

/// The largest `--accounts-file` read: 100,000 accounts of 13 bytes.
const MAX_ACCOUNTS_FILE_BYTES: u64 = 4 * 1024 * 1024;

impl Scope {
    fn from_args(args: &crate::cli::ScopeArgs, concurrency: usize) -> Result<Scope, ConfigError> {
        let check_account = |flag: &str, id: &str| {
            crate::dataset::layout::check_account_id(id)
                .map_err(|reason| ConfigError::Flag(format!("{flag}: {reason}")))
        };
        let accounts = match (&args.accounts_file, args.accounts.is_empty()) {
            (Some(path), _) => Some(read_accounts_file(path)?),
            (None, false) => Some(
                args.accounts
                    .iter()
                    .map(|a| a.trim().to_owned())
                    .filter(|a| !a.is_empty())
                    .collect(),
            ),
            (None, true) => None,
        };
        for id in accounts.iter().flatten() {
            check_account("--accounts", id)?;
        }
        let mut accounts = accounts;
        if let Some(list) = &mut accounts {
            list.sort();
            list.dedup();
            if list.is_empty() {
                return Err(ConfigError::Flag("--accounts names no account".into()));
            }
        }
        let exclude_accounts: Vec<String> = args
            .exclude_accounts
            .iter()
            .map(|a| a.trim().to_owned())
            .filter(|a| !a.is_empty())
            .collect();
        for id in &exclude_accounts {
            check_account("--exclude-accounts", id)?;
        }
        let duration_ms = parse_duration("--role-duration", &args.role_duration)?;
        if !(15 * 60_000..=12 * 3_600_000).contains(&duration_ms) {
            return Err(ConfigError::Flag(format!(
                "--role-duration {} is outside 15m to 12h (what STS allows)",
                args.role_duration
            )));
        }
        let arn_template = match (&args.role_name, &args.role_arn_template) {
            (Some(name), _) if name.is_empty() || name.contains(['/', ':', '{']) => {
                return Err(ConfigError::Flag(format!(
                    "--role-name {name:?} is not a role name; for a role on a path use --role-arn-template"
                )))
            }
            (Some(name), _) => Some(format!("arn:aws:iam::{{account}}:role/{name}")),
            (None, Some(template)) if !template.contains("{account}") => {
                return Err(ConfigError::Flag(format!(
                    "--role-arn-template {template:?} has no {{account}} to put the account id in"
                )))
            }
            (None, Some(template)) => Some(template.clone()),
            (None, None) => None,
        };
        let role = arn_template.map(|arn_template| RoleSpec {
            arn_template,
            external_id: args.external_id.clone().filter(|e| !e.is_empty()),
            session_name: args.role_session_name.clone(),
            duration: std::time::Duration::from_millis(duration_ms as u64),
        });
        if role.is_none() && args.external_id.is_some() {
            return Err(ConfigError::Flag(
                "--external-id goes with --role-name or --role-arn-template".into(),
            ));
        }
        let regions: Vec<String> = args
            .regions
            .iter()
            .map(|r| r.trim().to_owned())
            .filter(|r| !r.is_empty())
            .collect();
        let regions = match regions.as_slice() {
            [] => None,
            [all] if all == "all-enabled" => Some(Regions::AllEnabled),
            _ => {
                let mut regions = regions;
                for region in &regions {
                    crate::dataset::layout::check_region(region).map_err(|reason| {
                        ConfigError::Flag(format!("--regions: {reason} (or all-enabled, alone)"))
                    })?;
                }
                regions.sort();
                regions.dedup();
                Some(Regions::Listed(regions))
            }
        };
        let ou_ids = |flag: &str, list: &[String]| -> Result<Vec<String>, ConfigError> {
            let ids: Vec<String> = list
                .iter()
                .map(|o| o.trim().to_owned())
                .filter(|o| !o.is_empty())
                .collect();
            for id in &ids {
                let shaped = (id.starts_with("ou-") || id.starts_with("r-"))
                    && id.len() <= 68
                    && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-');
                if !shaped {
                    return Err(ConfigError::Flag(format!(
                        "{flag} {id:?} is not an organizational unit id such as ou-ab12-cd34ef56 (or a root, r-ab12)"
                    )));
                }
            }
            Ok(ids)
        };
        let organization = if args.organization {
            Some(OrgFilter {
                include_ou: ou_ids("--include-ou", &args.include_ou)?,
                exclude_ou: ou_ids("--exclude-ou", &args.exclude_ou)?,
            })
        } else {
            None
        };
        let shard = match &args.shard {
            Some(text) => Some(parse_shard("--shard", text, 1)?),
            None => match (
                std::env::var("AWS_BATCH_JOB_ARRAY_INDEX"),
                std::env::var("AWS_BATCH_JOB_ARRAY_SIZE"),
            ) {
                (Ok(index), Ok(size)) => Some(parse_shard(
                    "AWS_BATCH_JOB_ARRAY_INDEX/AWS_BATCH_JOB_ARRAY_SIZE",
                    &format!("{}/{}", index.trim(), size.trim()),
                    0,
                )?),
                _ => None,
            },
        };
        let retry_window_ms = parse_duration("--retry-window", &args.retry_window)?;
        Ok(Scope {
            accounts,
            organization,
            exclude_accounts,
            role,
            regions,
            shard,
            pairs_at_once: args.pairs_at_once.map_or(concurrency, usize::from),
            dry_run: args.dry_run,
            retry_window: std::time::Duration::from_millis(retry_window_ms.max(0) as u64),
        })
    }
}

/// `K/N`, where K counts from `first` (1 for `--shard`, 0 for AWS Batch's
/// array index).
fn parse_shard(flag: &str, text: &str, first: u32) -> Result<Shard, ConfigError> {
    let bad = || ConfigError::Flag(format!("{flag} {text:?} is not K/N, such as 2/8"));
    let (k, n) = text.split_once('/').ok_or_else(bad)?;
    let (k, n): (u32, u32) = (
        k.trim().parse().map_err(|_| bad())?,
        n.trim().parse().map_err(|_| bad())?,
    );
    if n == 0 || n > 100_000 || k < first || k - first >= n {
        return Err(ConfigError::Flag(format!(
            "{flag} {text:?}: the shard must be {first} to {} of N, N from 1 to 100000",
            n.saturating_sub(1) + first
        )));
    }
    Ok(Shard {
        index: k - first,
        count: n,
    })
}

/// Account ids from a file, one per line; `#` starts a comment.
fn read_accounts_file(path: &Path) -> Result<Vec<String>, ConfigError> {
    use std::io::Read as _;
    let refuse =
        |reason: String| ConfigError::Flag(format!("--accounts-file {}: {reason}", path.display()));
    let file = std::fs::File::open(path).map_err(|e| refuse(e.to_string()))?;
    let mut text = String::new();
    file.take(MAX_ACCOUNTS_FILE_BYTES + 1)
        .read_to_string(&mut text)
        .map_err(|e| refuse(e.to_string()))?;
    if text.len() as u64 > MAX_ACCOUNTS_FILE_BYTES {
        return Err(refuse(format!(
            "larger than {MAX_ACCOUNTS_FILE_BYTES} bytes"
        )));
    }
    Ok(text
        .lines()
        .map(|line| line.split('#').next().unwrap_or("").trim().to_owned())
        .filter(|line| !line.is_empty())
        .collect())
}

/// How an export signs its run manifests.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Signing {
    Kms { key: String, algorithm: String },
    KeyFile(PathBuf),
}

/// One file a command writes: a path, or an object in a bucket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub enum Destination {
    File(PathBuf),
    S3 { bucket: String, key: String },
}

impl std::fmt::Display for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::File(path) => write!(f, "{}", path.display()),
            Destination::S3 { bucket, key } => write!(f, "s3://{bucket}/{key}"),
        }
    }
}

impl Destination {
    /// Parses `FILE` or `s3://bucket/key`; a folder is refused.
    pub fn parse(flag: &str, text: &str) -> Result<Destination, ConfigError> {
        match Location::parse(flag, text)? {
            Location::Local(path) if path.file_name().is_some() => Ok(Destination::File(path)),
            Location::Local(_) => Err(ConfigError::Flag(format!(
                "{flag} {text:?} names no file: end it with a file name"
            ))),
            Location::S3 { bucket, prefix } if !prefix.is_empty() && !text.ends_with('/') => {
                Ok(Destination::S3 {
                    bucket,
                    key: prefix,
                })
            }
            Location::S3 { .. } => Err(ConfigError::Flag(format!(
                "{flag} {text:?} names no object: end it with a file name"
            ))),
        }
    }
}

impl Location {
    /// Parses `DIR` or `s3://bucket/prefix`.
    pub fn parse(flag: &str, text: &str) -> Result<Location, ConfigError> {
        if text.trim().is_empty() {
            return Err(ConfigError::Flag(format!(
                "{flag} is empty: name a directory or s3://bucket/prefix"
            )));
        }
        let Some(rest) = text.strip_prefix("s3://") else {
            refuse_url_like(flag, text)?;
            return Ok(Location::Local(PathBuf::from(text)));
        };
        let (bucket, prefix) = rest.split_once('/').unwrap_or((rest, ""));
        let valid_bucket = (3..=63).contains(&bucket.len())
            && bucket
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'.')
            && !bucket.starts_with(['-', '.'])
            && !bucket.ends_with(['-', '.']);
        if !valid_bucket {
            return Err(ConfigError::Flag(format!(
                "{flag} {text:?} does not name a valid S3 bucket (3-63 lower-case letters, digits, dots, hyphens)"
            )));
        }
        let prefix = prefix.trim_matches('/');
        if prefix.split('/').any(|p| p == "." || p == "..") || prefix.contains("//") {
            return Err(ConfigError::Flag(format!(
                "{flag} {text:?} has an invalid prefix"
            )));
        }
        Ok(Location::S3 {
            bucket: bucket.to_owned(),
            prefix: prefix.to_owned(),
        })
    }

    pub fn is_s3(&self) -> bool {
        matches!(self, Location::S3 { .. })
    }

    /// The location the same however it was spelled: an absolute local path
    /// without `.` or `..` (symbolic links are not followed), or the S3 URL.
    pub fn identity(&self) -> String {
        match self {
            Location::Local(path) => format!("file://{}", normalized(path).display()),
            s3 => s3.to_string(),
        }
    }

    /// Whether this location lies inside `folder` of `other`.
    pub fn is_inside(&self, other: &Location, folder: &str) -> bool {
        match (self, other) {
            (Location::Local(inner), Location::Local(outer)) => {
                normalized(inner).starts_with(normalized(outer).join(folder.trim_end_matches('/')))
            }
            (
                Location::S3 { bucket, prefix },
                Location::S3 {
                    bucket: outer_bucket,
                    prefix: outer_prefix,
                },
            ) => {
                let folder = folder.trim_end_matches('/');
                let outer = if outer_prefix.is_empty() {
                    format!("{folder}/")
                } else {
                    format!("{outer_prefix}/{folder}/")
                };
                bucket == outer_bucket && format!("{prefix}/").starts_with(&outer)
            }
            _ => false,
        }
    }
}

/// Refuses text that looks like a URL but is not `s3://…` spelled exactly:
/// `S3://bucket` or `s3:/bucket` taken as a local folder would write a night
/// of data beside the job, on an ECS task's disk that is gone the next day.
fn refuse_url_like(flag: &str, text: &str) -> Result<(), ConfigError> {
    let Some((scheme, _)) = text.split_once(':') else {
        return Ok(());
    };
    let looks_like_scheme = scheme.len() >= 2
        && scheme.starts_with(|c: char| c.is_ascii_alphabetic())
        && scheme
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '+' | '-' | '.'));
    if !looks_like_scheme || !text[scheme.len() + 1..].starts_with('/') {
        return Ok(());
    }
    if scheme.eq_ignore_ascii_case("s3") {
        let rest = text[scheme.len() + 1..].trim_start_matches('/');
        return Err(ConfigError::Flag(format!(
            "{flag} {text:?} is not a location: write S3 locations as s3://{rest} (lower-case s3, two slashes)"
        )));
    }
    Err(ConfigError::Flag(format!(
        "{flag} {text:?} is a {scheme}: URL; give a local folder or s3://bucket/prefix (to keep a folder whose name has a colon, write it as ./{text})"
    )))
}

/// `path` made absolute and free of `.` and `..`, without touching the disk.
fn normalized(path: &Path) -> PathBuf {
    let absolute = std::path::absolute(path).unwrap_or_else(|_| path.to_path_buf());
    let mut out = PathBuf::new();
    for component in absolute.components() {
        match component {
            std::path::Component::CurDir => {}
            std::path::Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Location::Local(path) => write!(f, "{}", path.display()),
            Location::S3 { bucket, prefix } if prefix.is_empty() => write!(f, "s3://{bucket}/"),
            Location::S3 { bucket, prefix } => write!(f, "s3://{bucket}/{prefix}/"),
        }
    }
}

impl Serialize for Location {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// How S3 objects are addressed and written.
#[derive(Debug, Clone, Default, Serialize)]
pub struct S3Settings {
    pub sse: Option<Sse>,
    pub force_path_style: bool,
}

impl S3Settings {
    /// Settings for a command that writes (`write` given) or only reads.
    pub fn from_args(
        aws: &crate::cli::AwsArgs,
        write: Option<&S3WriteArgs>,
    ) -> Result<S3Settings, ConfigError> {
        let sse = match write {
            None => None,
            Some(write) => match (write.sse, &write.sse_kms_key_id) {
                (Some(SseArg::AwsKms), key_id) => Some(Sse::Kms {
                    key_id: key_id.clone(),
                }),
                (_, Some(_)) => {
                    return Err(ConfigError::Flag(
                        "--sse-kms-key-id needs --sse aws:kms".into(),
                    ))
                }
                (Some(SseArg::Aes256), None) => Some(Sse::Aes256),
                (None, None) => None,
            },
        };
        Ok(S3Settings {
            sse,
            force_path_style: aws.s3_force_path_style,
        })
    }
}

/// A validated export.
#[derive(Debug, Clone, Serialize)]
pub struct ExportConfig {
    pub output: Location,
    #[serde(serialize_with = "serialize_states")]
    pub states: Vec<SessionState>,
    pub window: TimeRange,
    pub slice_ms: i64,
    pub concurrency: usize,
    pub page_size: i32,
    pub filters: Vec<UserFilter>,
    pub aws: AwsSettings,
    /// The window as asked, for the checkpoint's fingerprint: a relative
    /// window (`lookback 30d`) must match again when a killed run resumes.
    pub window_spec: String,
    /// The checkpoint folder when not `<output>/_checkpoint`.
    pub checkpoint: Option<Location>,
    pub s3: S3Settings,
    /// Discard an unfinished checkpoint before crawling.
    pub restart: bool,
    /// How progress is shown; decided here, where stderr is looked at once.
    #[serde(skip)]
    pub progress: ProgressMode,
    /// How run manifests are signed, if they are.
    pub signing: Option<Signing>,
    /// Where the chain's new head is written after each run.
    pub chain_head_out: Option<Destination>,
    /// Which (account, region) pairs, and how to reach them.
    pub scope: Scope,
    /// The output lock's lease.
    #[serde(skip)]
    pub lock_lease: std::time::Duration,
    /// The run's clock: the system's, or one a test pinned.
    #[serde(skip)]
    pub clock: Clock,
    /// Things worth saying that do not stop the run.
    #[serde(skip)]
    pub warnings: Vec<String>,
}

fn serialize_states<S: serde::Serializer>(
    states: &[SessionState],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_seq(states.iter().map(|st| st.as_str()))
}

/// The filter keys a user may pass (the AWS CLI's); the crawler owns
/// InvokedAfter and InvokedBefore. SessionId exports one session.
const USER_FILTER_KEYS: [&str; 5] = ["Target", "Owner", "Status", "AccessType", "SessionId"];

impl ExportConfig {
    /// Whether the window ends when the run starts (no `--until`): a resumed
    /// crawl then extends to the resuming run's start.
    pub fn window_ends_now(&self) -> bool {
        self.window_spec.ends_with("until now")
    }

    /// Validates the flags. `clock` is the run's clock (the system's in the
    /// binary), unless `--clock-start` pins another.
    pub fn from_args(args: &ExportArgs, clock: Clock) -> Result<ExportConfig, ConfigError> {
        let clock = match &args.clock_start {
            Some(text) => Clock::starting_at(parse_time("--clock-start", text)?),
            None => clock,
        };
        let now_ms = clock.now_ms();
        let mut warnings = Vec::new();
        let until = match &args.until {
            Some(text) => parse_time("--until", text)?,
            None => now_ms.div_euclid(1000) * 1000,
        };
        let since = match (&args.since, &args.lookback) {
            (Some(text), _) => parse_time("--since", text)?,
            (None, Some(text)) => until - parse_duration("--lookback", text)?,
            (None, None) => until - HISTORY_DAYS * DAY_MS,
        };
        let window_spec = format!(
            "{} until {}",
            match (&args.since, &args.lookback) {
                (Some(_), _) => format!("since {}", crate::time::format_filter_time(since)),
                (None, Some(text)) => format!("lookback {text}"),
                (None, None) => format!("lookback {HISTORY_DAYS}d"),
            },
            match &args.until {
                Some(_) => crate::time::format_filter_time(until),
                None => "now".into(),
            }
        );
        if since >= until {
            let empty = TimeRange {
                start: since,
                end: until,
            };
            return Err(ConfigError::Flag(format!(
                "--since is not before --until ({empty}): the window is empty"
            )));
        }
        if until - since > HISTORY_DAYS * DAY_MS {
            warnings.push(format!(
                "the window is longer than {HISTORY_DAYS} days; History keeps {HISTORY_DAYS} days only, so only Active sessions can be older"
            ));
        }
        let lock_lease_ms = parse_duration("--lock-lease", &args.lock_lease)?;
        if !(MIN_LOCK_LEASE_MS..=3_600_000).contains(&lock_lease_ms) {
            return Err(ConfigError::Flag(format!(
                "--lock-lease {} is outside {MIN_LOCK_LEASE_MS}ms to 1h",
                args.lock_lease
            )));
        }
        let slice_ms = parse_duration("--slice", &args.slice)?;
        if slice_ms < 1000 || slice_ms % 1000 != 0 {
            return Err(ConfigError::Flag(format!(
                "--slice {:?} must be a whole number of seconds, at least 1s (filters take whole seconds)",
                args.slice
            )));
        }
        let states = match args.state {
            StateArg::Active => vec![SessionState::Active],
            StateArg::History => vec![SessionState::History],
            StateArg::All => vec![SessionState::Active, SessionState::History],
        };
        let filters = args
            .filters
            .iter()
            .filter(|f| !f.trim().is_empty())
            .map(|f| parse_filter(f))
            .collect::<Result<Vec<_>, _>>()?;
        // DescribeSessions takes 6 filters; the crawler uses 2.
        if filters.len() > 4 {
            return Err(ConfigError::Flag(format!(
                "{} --filters given; at most 4 fit beside the crawler's InvokedAfter and InvokedBefore",
                filters.len()
            )));
        }
        let output = Location::parse("--output", &args.output)?;
        let checkpoint = args
            .checkpoint
            .as_deref()
            .map(|text| Location::parse("--checkpoint", text))
            .transpose()?;
        if let Some(inside) = checkpoint
            .as_ref()
            .filter(|c| c.is_inside(&output, SESSIONS_PREFIX))
        {
            return Err(ConfigError::Flag(format!(
                "--checkpoint {inside} is inside the output's {SESSIONS_PREFIX} folder, where Athena would read staged pages as sessions; choose a folder outside it"
            )));
        }
        let s3 = S3Settings::from_args(&args.aws, Some(&args.s3_write))?;
        let uses_s3 = output.is_s3() || checkpoint.as_ref().is_some_and(Location::is_s3);
        if s3.sse.is_some() && !uses_s3 {
            return Err(ConfigError::Flag(
                "--sse applies to s3:// outputs and checkpoints only".into(),
            ));
        }

        let evidence = &args.evidence;
        let signing = match (&evidence.sign_kms_key, &evidence.sign_key_file) {
            (Some(key), _) if key.trim().is_empty() => {
                return Err(ConfigError::Flag("--sign-kms-key is empty".into()))
            }
            (Some(key), _) => Some(Signing::Kms {
                key: key.clone(),
                algorithm: evidence.sign_kms_algorithm.clone(),
            }),
            (None, Some(path)) => Some(Signing::KeyFile(path.clone())),
            (None, None) => None,
        };
        let chain_head_out = evidence
            .chain_head_out
            .as_deref()
            .map(|text| Destination::parse("--chain-head-out", text))
            .transpose()?;
        let beside_the_output = match (&chain_head_out, &output) {
            (Some(Destination::File(path)), Location::Local(root)) => path.starts_with(root),
            (Some(Destination::S3 { bucket, .. }), Location::S3 { bucket: out, .. }) => {
                bucket == out
            }
            _ => false,
        };
        if beside_the_output {
            warnings.push(
                "--chain-head-out is beside the output: whoever can rewrite the output can rewrite it too; keep the head where the job's role can write but not delete (another bucket, a log)".into(),
            );
        }

        if let Some(account) = &args.account_id {
            if account.len() != 12 || !account.bytes().all(|b| b.is_ascii_digit()) {
                return Err(ConfigError::Flag(format!(
                    "--account-id {account:?} is not a 12-digit AWS account id"
                )));
            }
        }
        Ok(ExportConfig {
            output,
            states,
            window: TimeRange {
                start: since,
                end: until,
            },
            slice_ms,
            concurrency: usize::from(args.concurrency),
            page_size: i32::from(args.page_size),
            filters,
            aws: AwsSettings::from_args(&args.aws, args.account_id.clone(), "export")?,
            window_spec,
            checkpoint,
            s3,
            restart: args.restart,
            progress: progress_mode(args.progress, args.progress_interval),
            signing,
            chain_head_out,
            scope: Scope::from_args(&args.scope, usize::from(args.concurrency))?,
            lock_lease: std::time::Duration::from_millis(lock_lease_ms as u64),
            clock,
            warnings,
        })
    }
}

/// `2026-11-01`, `2026-11-01T06:00:00Z` or any RFC 3339 time; a date alone is
/// midnight UTC.
pub fn parse_time(flag: &str, text: &str) -> Result<i64, ConfigError> {
    if let Ok(t) = chrono::DateTime::parse_from_rfc3339(text) {
        return Ok(t.timestamp_millis());
    }
    if let Ok(date) = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d") {
        return Ok(date
            .and_time(chrono::NaiveTime::MIN)
            .and_utc()
            .timestamp_millis());
    }
    Err(ConfigError::Flag(format!(
        "{flag} {text:?} is not an ISO-8601 UTC time: use 2026-11-01 or 2026-11-01T06:00:00Z"
    )))
}

fn parse_duration(flag: &str, text: &str) -> Result<i64, ConfigError> {
    humantime::parse_duration(text)
        .ok()
        .and_then(|d| i64::try_from(d.as_millis()).ok())
        .filter(|ms| *ms > 0)
        .ok_or_else(|| {
            ConfigError::Flag(format!(
                "{flag} {text:?} is not a duration such as 30d, 6h or 90m"
            ))
        })
}

/// Parses one filter in the AWS CLI's shorthand: `key=Owner,value=arn:…`.
/// The value runs to the end, so it may hold commas.
pub fn parse_filter(text: &str) -> Result<UserFilter, ConfigError> {
    let bad = |why: &str| {
        ConfigError::Flag(format!(
            "--filters {text:?} {why}: write key=<Target|Owner|Status|AccessType|SessionId>,value=<value>"
        ))
    };
    let rest = text
        .trim()
        .strip_prefix("key=")
        .ok_or_else(|| bad("does not start with key="))?;
    let (key, value) = rest
        .split_once(",value=")
        .ok_or_else(|| bad("has no ,value="))?;
    if !USER_FILTER_KEYS.contains(&key) {
        return Err(bad(&format!(
            "has the key {key:?}, which an export cannot filter on"
        )));
    }
    if value.is_empty() || value.chars().count() > 400 {
        return Err(bad(
            "has a value that is empty or longer than 400 characters",
        ));
    }
    let allowed: &[&str] = match key {
        "Status" => &STATUSES,
        "AccessType" => &ACCESS_TYPES,
        _ => &[],
    };
    if !allowed.is_empty() && !allowed.contains(&value) {
        return Err(bad(&format!(
            "has the {key} {value:?}; use one of {allowed:?}"
        )));
    }
    Ok(UserFilter {
        key: key.to_owned(),
        value: value.to_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    const NOW: i64 = 1_790_000_000_500;

    fn config(extra: &[&str]) -> Result<ExportConfig, ConfigError> {
        config_with_output("/tmp/x", extra)
    }

    fn config_with_output(output: &str, extra: &[&str]) -> Result<ExportConfig, ConfigError> {
        let mut argv = vec!["ssm-audit", "export", "--output", output];
        argv.extend_from_slice(extra);
        let cli = crate::cli::Cli::try_parse_from(argv).expect("flags parse");
        let crate::cli::Command::Export(args) = cli.command else {
            panic!("an export command")
        };
        ExportConfig::from_args(&args, Clock::fixed(NOW))
    }

    mod properties {
        use super::*;
        use proptest::prelude::*;

        /// A flag's value: a valid one, one near a limit, or anything.
        fn value() -> impl Strategy<Value = String> {
            prop_oneof![
                Just("30d".to_string()),
                Just("2026-11-01".to_string()),
                Just("+262142-12-31".to_string()),
                Just("-1s".to_string()),
                Just("18446744073709551615ms".to_string()),
                Just("S3://b/p".to_string()),
                "[0-9a-zA-Z:+/=.,-]{0,24}",
                "\\PC{0,24}",
            ]
        }

        proptest! {
            #![proptest_config(ProptestConfig::with_cases(256))]

            /// Whatever the flags hold, validation answers Ok or a usage
            /// error that names a flag; it never panics.
            #[test]
            fn any_export_flags_validate_or_are_refused_by_name(
                flag in prop::sample::select(vec![
                    "--since", "--until", "--lookback", "--slice", "--page-size", "--concurrency",
                    "--filters", "--checkpoint", "--account-id", "--clock-start", "--lock-lease",
                ]),
                text in value(),
                output in value(),
            ) {
                let mut argv = vec!["ssm-audit", "export", "--output", output.as_str()];
                argv.extend([flag, text.as_str()]);
                let Ok(cli) = crate::cli::Cli::try_parse_from(argv) else {
                    return Ok(()); // clap refused it: exit 2 with its message
                };
                let crate::cli::Command::Export(args) = cli.command else {
                    panic!("an export command")
                };
                if let Err(error) = ExportConfig::from_args(&args, Clock::fixed(NOW)) {
                    let text = error.to_string();
                    prop_assert!(text.contains("--") || text.contains("flag"), "{}", text);
                }
            }

            #[test]
            fn any_report_flags_validate_or_are_refused(
                from in value(),
                to in value(),
                presign in value(),
            ) {
                let argv = ["ssm-audit", "report", "--input", "/tmp/in", "--out", "s3://bucket-x/r.html",
                    "--from", &from, "--to", &to, "--presign", &presign];
                if let Ok(crate::cli::Cli { command: crate::cli::Command::Report(args), .. }) =
                    crate::cli::Cli::try_parse_from(argv)
                {
                    let _ = crate::report::ReportConfig::from_args(&args);
                }
            }
        }
    }

    #[test]
    fn defaults_crawl_thirty_days_of_both_states() {
        let c = config(&[]).expect("valid");
        assert_eq!(c.window.end, 1_790_000_000_000);
        assert_eq!(c.window.end - c.window.start, 30 * DAY_MS);
        assert_eq!(c.states, vec![SessionState::Active, SessionState::History]);
        assert_eq!(c.slice_ms, 60_000);
        assert!(c.warnings.is_empty());
    }

    #[test]
    fn refuses_an_empty_window_and_warns_on_a_long_one() {
        let err = config(&["--since", "2026-11-02", "--until", "2026-11-01"]).expect_err("empty");
        assert!(err.to_string().contains("not before"), "{err}");
        let long = config(&["--lookback", "45d"]).expect("valid");
        assert_eq!(long.warnings.len(), 1);
    }

    #[test]
    fn parses_times_and_rejects_nonsense() {
        assert_eq!(parse_time("--since", "1970-01-02").expect("date"), DAY_MS);
        assert_eq!(
            parse_time("--since", "1970-01-01T00:00:01Z").expect("time"),
            1000
        );
        assert!(parse_time("--since", "yesterday").is_err());
        assert!(config(&["--slice", "1500ms"]).is_err());
        assert!(config(&["--lookback", "forever"]).is_err());
    }

    #[test]
    fn endpoint_urls_are_recorded_without_secrets() {
        assert_eq!(
            redacted_url("https://user:s3cr3t@vpce-1.ssm.eu-west-1.vpce.amazonaws.com:443/p?X-Amz-Signature=abc#f"),
            "https://vpce-1.ssm.eu-west-1.vpce.amazonaws.com:443/p"
        );
        assert_eq!(
            redacted_url("http://127.0.0.1:4566"),
            "http://127.0.0.1:4566"
        );
        let settings = AwsSettings {
            endpoint_url: Some("http://k:v@host/?token=t".into()),
            ..AwsSettings::default()
        };
        let json = serde_json::to_string(&settings).expect("json");
        assert!(
            json.contains("http://host/") && !json.contains("token") && !json.contains("k:v"),
            "{json}"
        );
    }

    #[test]
    fn locations_are_directories_or_s3_urls() {
        assert_eq!(
            Location::parse("--output", "out").expect("dir"),
            Location::Local("out".into())
        );
        let s3 = Location::parse("--output", "s3://audit-bucket/ssm/sessions/").expect("s3");
        assert_eq!(
            s3,
            Location::S3 {
                bucket: "audit-bucket".into(),
                prefix: "ssm/sessions".into()
            }
        );
        assert_eq!(s3.to_string(), "s3://audit-bucket/ssm/sessions/");
        assert_eq!(
            Location::parse("--output", "s3://b1b/")
                .expect("root")
                .to_string(),
            "s3://b1b/"
        );
        for bad in [
            "s3://",
            "s3://Bad_Bucket/x",
            "s3://ab/x",
            "s3://bucket/a/../b",
            "",
        ] {
            assert!(Location::parse("--output", bad).is_err(), "{bad}");
        }
        // A URL of another spelling or scheme is never a local folder.
        for (bad, hint) in [
            ("S3://bucket/audit", "s3://bucket/audit"),
            ("s3:/bucket/audit", "s3://bucket/audit"),
            ("S3:///bucket", "s3://bucket"),
            ("https://bucket.s3.amazonaws.com/x", "https: URL"),
            ("file:///var/audit", "file: URL"),
        ] {
            let error = Location::parse("--output", bad).expect_err(bad).to_string();
            assert!(error.contains(hint), "{bad}: {error}");
        }
        for fine in ["./S3://x", "out:2026", "C:/x", "a/b:c"] {
            assert!(Location::parse("--output", fine).is_ok(), "{fine}");
        }
        assert!(
            config(&["--sse", "AES256"]).is_err(),
            "--sse with a local output"
        );
        assert!(config_with_output("s3://bucket-a/p", &["--sse-kms-key-id", "k"]).is_err());
        let c = config_with_output(
            "s3://bucket-a/p",
            &["--sse", "aws:kms", "--sse-kms-key-id", "alias/audit"],
        )
        .expect("valid");
        assert_eq!(
            c.s3.sse,
            Some(crate::storage::Sse::Kms {
                key_id: Some("alias/audit".into())
            })
        );
    }

    #[test]
    fn filters_follow_the_cli_shorthand() {
        let f = parse_filter("key=Owner,value=arn:aws:iam::1:user/a,b").expect("valid");
        assert_eq!(
            (f.key.as_str(), f.value.as_str()),
            ("Owner", "arn:aws:iam::1:user/a,b")
        );
        assert_eq!(f.sdk_key(), SessionFilterKey::Owner);
        assert_eq!(
            parse_filter("key=Target,value=i-1")
                .expect("valid")
                .sdk_key(),
            SessionFilterKey::TargetId
        );
        for bad in [
            "Owner=x",
            "key=Owner",
            "key=InvokedAfter,value=x",
            "key=Status,value=Open",
            "key=Owner,value=",
        ] {
            assert!(parse_filter(bad).is_err(), "{bad}");
        }
        let c = config(&[
            "--filters",
            "key=Status,value=Failed",
            "key=AccessType,value=JustInTime",
        ])
        .expect("valid");
        assert_eq!(c.filters.len(), 2);
    }
}

/// The days a report or a coverage check may ask about: sessions are dated
/// by AWS, and the calendar's far ends only break arithmetic.
const FIRST_DAY: chrono::NaiveDate = chrono::NaiveDate::from_ymd_opt(1970, 1, 1).expect("a date");
const LAST_DAY: chrono::NaiveDate = chrono::NaiveDate::from_ymd_opt(9999, 12, 31).expect("a date");

fn parse_day(flag: &str, text: &str) -> Result<chrono::NaiveDate, ConfigError> {
    let day = chrono::NaiveDate::parse_from_str(text, "%Y-%m-%d").map_err(|_| {
        ConfigError::Flag(format!("{flag} {text:?} is not a date such as 2026-07-01"))
    })?;
    if !(FIRST_DAY..=LAST_DAY).contains(&day) {
        return Err(ConfigError::Flag(format!(
            "{flag} {text:?} is outside {FIRST_DAY} to {LAST_DAY}"
        )));
    }
    Ok(day)
}

/// `--from` and `--to` (UTC days, inclusive), each optional, in order.
pub fn parse_days(
    from: Option<&str>,
    to: Option<&str>,
) -> Result<(Option<chrono::NaiveDate>, Option<chrono::NaiveDate>), ConfigError> {
    let from = from.map(|t| parse_day("--from", t)).transpose()?;
    let to = to.map(|t| parse_day("--to", t)).transpose()?;
    if let (Some(from), Some(to)) = (from, to) {
        if from > to {
            return Err(ConfigError::Flag(format!(
                "--from {from} is after --to {to}"
            )));
        }
    }
    Ok((from, to))
}

/// What a verification holds the data set to beyond its own manifests.
#[derive(Debug, Clone, Default)]
pub struct VerifyKeys {
    pub expect_heads: Vec<crate::dataset::chain::ExpectedHead>,
    pub public_key: Option<PathBuf>,
    pub kms_key: Option<String>,
}

impl VerifyKeys {
    pub fn from_args(args: &crate::cli::VerifyKeyArgs) -> Result<VerifyKeys, ConfigError> {
        // A kept head file holds one line per (account, region): each
        // value may hold several, split by white space.
        let expect_heads = args
            .expect_head
            .iter()
            .flat_map(|h| h.split_whitespace())
            .map(|h| {
                crate::dataset::chain::ExpectedHead::parse(h)
                    .map_err(|reason| ConfigError::Flag(format!("--expect-head {h:?}: {reason}")))
            })
            .collect::<Result<_, _>>()?;
        Ok(VerifyKeys {
            expect_heads,
            public_key: args.public_key.clone(),
            kms_key: args.kms_key.clone(),
        })
    }
}

/// A validated `verify`.
#[derive(Debug, Clone)]
pub struct VerifyConfig {
    pub output: Location,
    pub keys: VerifyKeys,
    pub json: bool,
    pub aws: AwsSettings,
    pub s3: S3Settings,
}

impl VerifyConfig {
    pub fn from_args(args: &crate::cli::VerifyArgs) -> Result<VerifyConfig, ConfigError> {
        Ok(VerifyConfig {
            output: Location::parse("--output", &args.output)?,
            keys: VerifyKeys::from_args(&args.keys)?,
            json: args.format == crate::cli::OutputFormat::Json,
            aws: AwsSettings::from_args(&args.aws, None, "verify")?,
            s3: S3Settings::from_args(&args.aws, None)?,
        })
    }
}

/// A validated `coverage`.
#[derive(Debug, Clone)]
pub struct CoverageConfig {
    pub output: Location,
    pub from: Option<chrono::NaiveDate>,
    pub to: Option<chrono::NaiveDate>,
    pub max_age: std::time::Duration,
    pub json: bool,
    pub aws: AwsSettings,
    pub s3: S3Settings,
    pub clock: Clock,
}

impl CoverageConfig {
    pub fn from_args(args: &crate::cli::CoverageArgs) -> Result<CoverageConfig, ConfigError> {
        let (from, to) = parse_days(args.from.as_deref(), args.to.as_deref())?;
        let max_age_ms = parse_duration("--max-age", &args.max_age)?;
        let clock = match &args.clock_start {
            Some(text) => Clock::starting_at(parse_time("--clock-start", text)?),
            None => Clock::system(),
        };
        Ok(CoverageConfig {
            output: Location::parse("--output", &args.output)?,
            from,
            to,
            max_age: std::time::Duration::from_millis(max_age_ms.max(0) as u64),
            json: args.format == crate::cli::OutputFormat::Json,
            aws: AwsSettings::from_args(&args.aws, None, "coverage")?,
            s3: S3Settings::from_args(&args.aws, None)?,
            clock,
        })
    }
}
