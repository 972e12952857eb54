//! `ssm-audit report`: an auditor's document from the data set. Reads only
//! the partitions in the period, keeps the sessions that match the filters,
//! computes the figures an auditor asks for, and writes them as one
//! self-contained HTML file, RFC 4180 CSV, or JSON, to a file or to S3 (with
//! an optional presigned link for people without AWS access).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Duration;

use bytes::Bytes;
use chrono::{Datelike, NaiveDate, Timelike};
use futures_util::stream::{self, StreamExt};
use serde::Serialize;

use crate::aws::{self, AwsError};
use crate::cli::{ReportArgs, ReportFormat};
use crate::config::{
    parse_days, AwsSettings, ConfigError, Destination, Location, S3Settings, VerifyKeys,
};
use crate::dataset::layout::{self, PartitionKey};
use crate::dataset::record::{sort_rows, SessionRecord};
use crate::dataset::schema;
use crate::evidence::coverage;
use crate::evidence::verify::{self, FilesSeen, HashedFile, VerifyError, VerifyRunError};
use crate::storage::{AnyStorage, Storage, StorageError, REQUESTS_AT_ONCE};
use crate::text::printable;
use crate::time::Clock;

mod csv;
mod html;

/// The longest a presigned link may live (SigV4's limit).
const MAX_PRESIGN: Duration = Duration::from_secs(7 * 24 * 3600);
/// Rows in the "top" and "longest" tables.
const TOP: usize = 10;

/// A validated report request.
#[derive(Debug, Clone)]
pub struct ReportConfig {
    pub input: Location,
    pub from: Option<NaiveDate>,
    pub to: Option<NaiveDate>,
    pub owners: Vec<String>,
    pub targets: Vec<String>,
    pub format: ReportFormat,
    pub out: Destination,
    pub presign: Option<Duration>,
    /// What the report's verification holds the data set to.
    pub keys: VerifyKeys,
    pub aws: AwsSettings,
    pub s3: S3Settings,
    /// Stamps `generated_at`.
    pub clock: Clock,
}

/// The most daily bars a report draws; a longer period is drawn over the
/// days that hold sessions.
const MAX_CHART_DAYS: u64 = 3_660;

impl ReportConfig {
    pub fn from_args(args: &ReportArgs) -> Result<ReportConfig, ConfigError> {
        let input = Location::parse("--input", &args.input)?;
        let (from, to) = parse_days(args.from.as_deref(), args.to.as_deref())?;
        let out = Destination::parse("--out", &args.out)?;
        let presign = match &args.presign {
            None => None,
            Some(text) => {
                let duration = humantime::parse_duration(text).map_err(|_| {
                    ConfigError::Flag(format!(
                        "--presign {text:?} is not a duration such as 7d or 12h"
                    ))
                })?;
                if duration.is_zero() || duration > MAX_PRESIGN {
                    return Err(ConfigError::Flag(format!(
                        "--presign {text} must be above 0 and at most 7d"
                    )));
                }
                if !matches!(out, Destination::S3 { .. }) {
                    return Err(ConfigError::Flag(
                        "--presign needs an s3:// --out to link to".into(),
                    ));
                }
                Some(duration)
            }
        };
        let s3 = S3Settings::from_args(&args.aws, Some(&args.s3_write))?;
        if s3.sse.is_some() && !matches!(out, Destination::S3 { .. }) {
            return Err(ConfigError::Flag(
                "--sse applies to an s3:// --out only".into(),
            ));
        }
        Ok(ReportConfig {
            input,
            from,
            to,
            owners: args
                .owner
                .iter()
                .filter(|o| !o.is_empty())
                .cloned()
                .collect(),
            targets: args
                .target
                .iter()
                .filter(|t| !t.is_empty())
                .cloned()
                .collect(),
            format: args.format,
            out,
            presign,
            keys: VerifyKeys::from_args(&args.keys)?,
            aws: AwsSettings::from_args(&args.aws, None, "report")?,
            s3,
            clock: Clock::system(),
        })
    }
}

#[derive(Debug, thiserror::Error)]
pub enum ReportError {
    #[error(transparent)]
    Storage(#[from] StorageError),
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("cannot write the report to {destination}")]
    Write {
        destination: String,
        #[source]
        source: StorageError,
    },
    #[error("cannot encode the report: {0}")]
    Encode(String),
    /// Not transparent: `exit::code_of` must see the `VerifyError` in the
    /// chain (a location without a data set is exit 2).
    #[error("{0}")]
    Input(#[from] VerifyError),
    /// The verification's key could not be read (exit 2 for a key file).
    #[error("{0}")]
    Keys(#[from] VerifyRunError),
}

/// What a report states about the evidence behind it.
#[derive(Debug, Clone, Serialize)]
pub struct EvidenceStatement {
    /// Verification found nothing (chains, heads, signatures when a key was
    /// given, and the period's files).
    pub verified: bool,
    pub verification: String,
    /// One line per finding.
    pub findings: Vec<String>,
    /// Every day of the period was crawled by a completed run, for every
    /// (account, region) of the data set.
    pub fully_covered: bool,
    /// Days of the period that some (account, region) has no crawl for.
    pub days_not_crawled: Vec<String>,
    /// Each gap: `ACCOUNT/REGION from … to … (length)`.
    pub gaps: Vec<String>,
    /// Per (account, region): its newest completed run.
    pub newest_runs: Vec<String>,
}

impl EvidenceStatement {
    /// The statement as plain lines (the CSV report's sidecar).
    pub fn text(&self) -> String {
        let mut text = format!(
            "Verification: {}\n{}\n",
            if self.verified { "clean" } else { "FINDINGS" },
            self.verification
        );
        for finding in &self.findings {
            text.push_str(&format!("  {finding}\n"));
        }
        if self.fully_covered {
            text.push_str("Coverage: every day of the period was crawled\n");
        } else {
            text.push_str(&format!(
                "Coverage: NOT CRAWLED: {}\n",
                self.days_not_crawled.join(", ")
            ));
            for gap in &self.gaps {
                text.push_str(&format!("  gap {gap}\n"));
            }
        }
        for run in &self.newest_runs {
            text.push_str(&format!("{run}\n"));
        }
        text
    }
}

/// The most findings a report lists; `verify` lists them all.
const MAX_STATED_FINDINGS: usize = 100;

/// Verifies the data set (the period's files only) and measures coverage
/// for the report's period.
async fn state_evidence<S: Storage>(
    storage: &S,
    config: &ReportConfig,
    files: FilesSeen,
) -> Result<EvidenceStatement, ReportError> {
    let mut options = verify::options_for(&config.keys, &config.aws).await?;
    options.files_seen = Some(files);
    options.files_between = Some((
        config.from.unwrap_or(NaiveDate::MIN),
        config.to.unwrap_or(NaiveDate::MAX),
    ));
    // One read of the manifests serves verification and coverage.
    let ledger = crate::evidence::chain::read_ledger(storage).await?;
    let (verified, verification, findings) =
        match verify::verify_ledger(storage, &ledger, &options).await {
            Ok(report) => (
                report.is_clean(),
                report.headline(),
                report
                    .findings
                    .iter()
                    .take(MAX_STATED_FINDINGS)
                    .map(|f| f.to_string())
                    .collect(),
            ),
            Err(VerifyError::NoManifests { .. }) => (
                false,
                "no run manifests: nothing vouches for these files".to_owned(),
                Vec::new(),
            ),
            Err(e) => return Err(e.into()),
        };
    let now = config.clock.now();
    let period = coverage::period_of(config.from, config.to, now);
    let found = coverage::coverage_of(
        &ledger,
        &coverage::CoverageOptions {
            period,
            max_age: chrono::Duration::hours(36),
            now,
        },
    );
    let days_not_crawled = found
        .days_not_crawled(
            config.from.unwrap_or(NaiveDate::MIN),
            config.to.unwrap_or(NaiveDate::MAX),
        )
        .iter()
        .map(|d| d.to_string())
        .collect::<Vec<_>>();
    let gaps = found
        .pairs
        .iter()
        .flat_map(|p| {
            p.gaps
                .iter()
                .map(move |g| format!("{}/{} {g}", p.account_id, p.region))
        })
        .collect::<Vec<_>>();
    let newest_runs = found
        .pairs
        .iter()
        .map(|p| match &p.newest_run {
            Some(run) => format!(
                "{}/{}: newest completed run {} finished {} ({} before this report)",
                p.account_id,
                p.region,
                run.run_id,
                run.finished_at.format("%Y-%m-%dT%H:%M:%SZ"),
                coverage::duration_text(chrono::Duration::seconds(run.age_seconds))
            ),
            None => format!(
                "{}/{}: no completed run covers any time",
                p.account_id, p.region
            ),
        })
        .collect();
    Ok(EvidenceStatement {
        verified,
        verification,
        findings,
        fully_covered: !found.pairs.is_empty() && gaps.is_empty(),
        days_not_crawled,
        gaps,
        newest_runs,
    })
}

/// Everything a report shows, in every format.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    pub generated_at: String,
    pub source: String,
    pub period: Period,
    pub filters: Filters,
    pub totals: Totals,
    pub sessions_per_day: Vec<DayCount>,
    pub top_owners: Vec<NameCount>,
    pub top_targets: Vec<NameCount>,
    /// Files under `sessions/` left out, and why.
    pub skipped_files: Vec<SkippedFile>,
    /// Whether the data set is what its runs wrote, and which days of the
    /// period no completed run crawled.
    pub evidence: Option<EvidenceStatement>,
    /// Sessions by index into `sessions`.
    #[serde(skip)]
    pub longest: Vec<usize>,
    #[serde(skip)]
    pub failed: Vec<usize>,
    #[serde(skip)]
    pub just_in_time: Vec<usize>,
    #[serde(skip)]
    pub after_hours: Vec<usize>,
    #[serde(serialize_with = "serialize_sessions")]
    pub sessions: Vec<SessionRecord>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Period {
    /// First and last day (UTC, inclusive); None: unbounded.
    pub from: Option<String>,
    pub to: Option<String>,
}

#[derive(Debug, Clone, Serialize)]
pub struct Filters {
    pub owners: Vec<String>,
    pub targets: Vec<String>,
}

#[derive(Debug, Clone, Default, Serialize)]
pub struct Totals {
    pub sessions: usize,
    pub owners: usize,
    pub targets: usize,
    pub accounts: Vec<String>,
    pub regions: Vec<String>,
    pub failed: usize,
    pub just_in_time: usize,
    pub after_hours: usize,
    pub still_open: usize,
    pub hours_total: f64,
    pub by_status: BTreeMap<String, usize>,
}

#[derive(Debug, Clone, Serialize)]
pub struct DayCount {
    pub day: String,
    pub sessions: usize,
}

#[derive(Debug, Clone, Serialize)]
pub struct NameCount {
    pub name: String,
    pub sessions: usize,
}

/// A session as reports show it: times in RFC 3339 UTC, duration derived.
#[derive(Debug, Serialize)]
struct SessionView<'a> {
    session_id: &'a str,
    account_id: &'a str,
    region: &'a str,
    status: Option<&'a str>,
    target: Option<&'a str>,
    owner: Option<&'a str>,
    document_name: Option<&'a str>,
    reason: Option<&'a str>,
    access_type: Option<&'a str>,
    start_date: String,
    end_date: Option<String>,
    duration_minutes: Option<i64>,
    max_session_duration_minutes: Option<i32>,
    s3_output_url: Option<&'a str>,
    cloudwatch_output_url: Option<&'a str>,
    after_hours: bool,
    first_seen_at: String,
    last_seen_at: String,
}

impl<'a> SessionView<'a> {
    fn of(r: &'a SessionRecord) -> SessionView<'a> {
        SessionView {
            session_id: &r.session_id,
            account_id: &r.account_id,
            region: &r.region,
            status: r.status.as_deref(),
            target: r.target.as_deref(),
            owner: r.owner.as_deref(),
            document_name: r.document_name.as_deref(),
            reason: r.reason.as_deref(),
            access_type: r.access_type.as_deref(),
            start_date: rfc3339(r.start_date),
            end_date: r.end_date.map(rfc3339),
            duration_minutes: duration_minutes(r),
            max_session_duration_minutes: r.max_session_duration_minutes,
            s3_output_url: r.s3_output_url.as_deref(),
            cloudwatch_output_url: r.cloudwatch_output_url.as_deref(),
            after_hours: is_after_hours(r),
            first_seen_at: rfc3339(r.first_seen_at),
            last_seen_at: rfc3339(r.last_seen_at),
        }
    }
}

fn serialize_sessions<S: serde::Serializer>(
    sessions: &[SessionRecord],
    s: S,
) -> Result<S::Ok, S::Error> {
    s.collect_seq(sessions.iter().map(SessionView::of))
}

/// RFC 3339 in UTC with milliseconds, as reports print times; a time outside
/// the calendar (only a foreign file can hold one) is shown as what it is.
pub fn rfc3339(millis: i64) -> String {
    match crate::time::utc(millis) {
        // chrono's strftime parses its format on every call: 11% of a CSV
        // report's CPU. Years of four digits print alike either way.
        Some(t) if (0..=9999).contains(&t.year()) => {
            t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
        }
        Some(t) => t.format(RFC3339_MILLIS).to_string(),
        None => crate::time::format_filter_time(millis),
    }
}

const RFC3339_MILLIS: &str = "%Y-%m-%dT%H:%M:%S%.3fZ";

pub fn duration_minutes(r: &SessionRecord) -> Option<i64> {
    r.end_date.map(|end| (end - r.start_date) / 60_000)
}

/// Outside business hours, UTC: before 08:00 or from 18:00 on weekdays, or
/// any time on Saturday and Sunday. The same rule as
/// `schemas/queries/after_hours_sessions.sql`.
pub fn is_after_hours(r: &SessionRecord) -> bool {
    crate::time::utc(r.start_date).is_some_and(|start| {
        start.hour() < 8 || start.hour() >= 18 || start.weekday().number_from_monday() >= 6
    })
}

/// A file under `sessions/` the report could not use, named in the report:
/// an auditor must see that something was left out, not a smaller count.
#[derive(Debug, Clone, Serialize)]
pub struct SkippedFile {
    pub key: String,
    pub reason: String,
}

/// What [`select`] found.
#[derive(Debug, Default)]
pub struct Selected {
    /// The sessions of the period that match the filters, in report order.
    pub sessions: Vec<SessionRecord>,
    pub skipped: Vec<SkippedFile>,
    /// What was listed and read, for the evidence to check without reading
    /// again: the statement is then about the very bytes the report sums up.
    pub files: FilesSeen,
}

/// Reads the sessions of the period that match the filters: lists the data
/// set once, reads only the partitions in range, [`REQUESTS_AT_ONCE`] at a
/// time and in key order, and hashes each file as it is read.
pub async fn select<S: Storage>(
    storage: &S,
    config: &ReportConfig,
) -> Result<Selected, ReportError> {
    let owners: BTreeSet<&str> = config.owners.iter().map(String::as_str).collect();
    let targets: BTreeSet<&str> = config.targets.iter().map(String::as_str).collect();
    let mut selected = Selected::default();
    let listed = storage.list(layout::SESSIONS_PREFIX).await?;
    let mut in_period = Vec::new();
    for key in &listed {
        let Some(PartitionKey { date: day, .. }) = PartitionKey::parse(key) else {
            tracing::warn!(key = %printable(key), "skipping a file that is not a partition");
            selected.skipped.push(SkippedFile {
                key: key.clone(),
                reason: "not a partition (sessions/dt=YYYY-MM-DD/<account>_<region>.parquet)"
                    .into(),
            });
            continue;
        };
        if config.from.is_some_and(|from| day < from) || config.to.is_some_and(|to| day > to) {
            continue;
        }
        in_period.push(key.clone());
    }
    // S3 answers a read in tens of milliseconds: a quarter's partitions of
    // many (account, region) pairs read one by one would take the longest.
    let mut reads = stream::iter(in_period)
        .map(|key| async move {
            let read = verify::read_data_file(storage, &key).await;
            (key, read)
        })
        .buffered(REQUESTS_AT_ONCE);
    while let Some((key, read)) = reads.next().await {
        let found = match read {
            Ok(Some(found)) => found,
            Ok(None) => continue,
            Err(StorageError::TooLarge { limit, .. }) => {
                selected.skipped.push(SkippedFile {
                    key: key.clone(),
                    reason: format!("larger than {limit} bytes: not a partition ssm-audit wrote"),
                });
                continue;
            }
            Err(error) => return Err(error.into()),
        };
        selected
            .files
            .read
            .insert(key.clone(), HashedFile::of(&found));
        let rows = match schema::read_parquet(found.data) {
            Ok(rows) => rows,
            Err(error) => {
                tracing::warn!(key = %printable(&key), %error, "skipping an unreadable partition");
                selected.skipped.push(SkippedFile {
                    key: key.clone(),
                    reason: error.to_string(),
                });
                continue;
            }
        };
        selected.sessions.extend(rows.into_iter().filter(|r| {
            (owners.is_empty() || r.owner.as_deref().is_some_and(|o| owners.contains(o)))
                && (targets.is_empty() || r.target.as_deref().is_some_and(|t| targets.contains(t)))
        }));
    }
    selected.skipped.sort_by(|a, b| a.key.cmp(&b.key));
    sort_rows(&mut selected.sessions);
    selected.files.listed = listed;
    Ok(selected)
}

fn top(counts: HashMap<&str, usize>) -> Vec<NameCount> {
    let mut list: Vec<NameCount> = counts
        .into_iter()
        .map(|(name, sessions)| NameCount {
            name: name.to_owned(),
            sessions,
        })
        .collect();
    list.sort_by(|a, b| {
        b.sessions
            .cmp(&a.sessions)
            .then_with(|| a.name.cmp(&b.name))
    });
    list.truncate(TOP);
    list
}

/// Computes the report's figures from the selected sessions.
pub fn build(sessions: Vec<SessionRecord>, config: &ReportConfig, source: String) -> Report {
    let mut totals = Totals {
        sessions: sessions.len(),
        ..Totals::default()
    };
    let mut owners: HashMap<&str, usize> = HashMap::new();
    let mut targets: HashMap<&str, usize> = HashMap::new();
    let mut per_day: BTreeMap<NaiveDate, usize> = BTreeMap::new();
    let mut accounts = BTreeSet::new();
    let mut regions = BTreeSet::new();
    let (mut failed, mut jit, mut after_hours) = (Vec::new(), Vec::new(), Vec::new());
    let mut minutes_total = 0i64;
    for (index, r) in sessions.iter().enumerate() {
        *owners
            .entry(r.owner.as_deref().unwrap_or("(none)"))
            .or_default() += 1;
        *targets
            .entry(r.target.as_deref().unwrap_or("(none)"))
            .or_default() += 1;
        if let Some(day) = crate::dataset::layout::partition_date(r.start_date) {
            *per_day.entry(day).or_default() += 1;
        }
        accounts.insert(r.account_id.clone());
        regions.insert(r.region.clone());
        *totals
            .by_status
            .entry(r.status.clone().unwrap_or_else(|| "(none)".into()))
            .or_default() += 1;
        if r.status.as_deref() == Some("Failed") {
            failed.push(index);
        }
        if r.access_type.as_deref() == Some("JustInTime") {
            jit.push(index);
        }
        if is_after_hours(r) {
            after_hours.push(index);
        }
        match duration_minutes(r) {
            Some(m) => minutes_total += m,
            None => totals.still_open += 1,
        }
    }
    // Every day of the period gets a bar, also the days without sessions.
    let mut first = config.from.or_else(|| per_day.keys().next().copied());
    let mut last = config.to.or_else(|| per_day.keys().next_back().copied());
    if let (Some(a), Some(b)) = (first, last) {
        if b.signed_duration_since(a).num_days().unsigned_abs() > MAX_CHART_DAYS {
            first = per_day.keys().next().copied();
            last = per_day.keys().next_back().copied();
        }
    }
    let mut sessions_per_day = Vec::new();
    if let (Some(mut day), Some(last)) = (first, last) {
        while day <= last {
            sessions_per_day.push(DayCount {
                day: day.to_string(),
                sessions: per_day.get(&day).copied().unwrap_or(0),
            });
            match day.succ_opt() {
                Some(next) => day = next,
                None => break,
            }
        }
    }
    let mut longest: Vec<usize> = (0..sessions.len())
        .filter(|&i| sessions[i].end_date.is_some())
        .collect();
    longest.sort_by_key(|&i| std::cmp::Reverse(duration_minutes(&sessions[i]).unwrap_or(0)));
    longest.truncate(TOP);
    totals.owners = owners.len();
    totals.targets = targets.len();
    totals.accounts = accounts.into_iter().collect();
    totals.regions = regions.into_iter().collect();
    totals.failed = failed.len();
    totals.just_in_time = jit.len();
    totals.after_hours = after_hours.len();
    totals.hours_total = (minutes_total as f64 / 60.0 * 10.0).round() / 10.0;
    Report {
        generated_at: config.clock.now().format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        source,
        period: Period {
            from: config.from.map(|d| d.to_string()),
            to: config.to.map(|d| d.to_string()),
        },
        filters: Filters {
            owners: config.owners.clone(),
            targets: config.targets.clone(),
        },
        totals,
        sessions_per_day,
        top_owners: top(owners),
        top_targets: top(targets),
        skipped_files: Vec::new(),
        evidence: None,
        longest,
        failed,
        just_in_time: jit,
        after_hours,
        sessions,
    }
}

/// Renders the report in the requested format.
pub fn render(report: &Report, format: ReportFormat) -> Result<Vec<u8>, ReportError> {
    match format {
        ReportFormat::Html => Ok(html::render(report).into_bytes()),
        ReportFormat::Csv => csv::render(&report.sessions),
        ReportFormat::Json => {
            serde_json::to_vec_pretty(report).map_err(|e| ReportError::Encode(e.to_string()))
        }
    }
}

/// Runs `ssm-audit report`.
pub async fn run(config: ReportConfig) -> Result<(), ReportError> {
    let storage = aws::storage_for(&config.input, None, &config.aws, &config.s3).await?;
    verify::require_data_set(&storage).await?;
    let Selected {
        sessions,
        skipped,
        files,
    } = select(&storage, &config).await?;
    let mut report = build(sessions, &config, storage.location());
    report.skipped_files = skipped;
    let evidence = state_evidence(&storage, &config, files).await?;
    report.evidence = Some(evidence.clone());
    let bytes = render(&report, config.format)?;
    // The report goes through the storage seam like everything the product
    // writes: atomic and durable on disk, checksummed and encrypted in S3.
    let (destination, key) =
        aws::destination_storage(&config.out, None, &config.aws, &config.s3).await?;
    let written = |source| ReportError::Write {
        destination: config.out.to_string(),
        source,
    };
    destination
        .put(&key, Bytes::from(bytes))
        .await
        .map_err(written)?;
    if config.format == ReportFormat::Csv {
        // A CSV has no room for a statement: it goes beside the file.
        let sidecar = format!("{key}.evidence.txt");
        destination
            .put(&sidecar, Bytes::from(evidence.text()))
            .await
            .map_err(written)?;
    }
    if !evidence.verified || !evidence.fully_covered {
        tracing::warn!(
            verified = evidence.verified,
            days_not_crawled = evidence.days_not_crawled.len(),
            "the report states that the data set has findings or days no run crawled; see its evidence section"
        );
    }
    if let (Some(expires), AnyStorage::S3(s3)) = (config.presign, &destination) {
        // A link signed with temporary credentials dies with them.
        if let Some(until) = aws::credentials_expiry(&config.aws).await {
            let works_for = until
                .duration_since(std::time::SystemTime::now())
                .unwrap_or_default();
            if works_for < expires {
                tracing::warn!(
                    "the link works for {} only, not the {} asked: it is signed with temporary credentials (SSO, an assumed, ECS or EC2 role) that expire then; sign with longer-lived credentials for a link that lasts",
                    humantime::format_duration(Duration::from_secs(works_for.as_secs())),
                    humantime::format_duration(expires)
                );
            }
        }
        println!(
            "{}",
            s3.presigned_get(&key, expires).await.map_err(written)?
        );
    }
    let format = match config.format {
        ReportFormat::Html => "an HTML",
        ReportFormat::Csv => "a CSV",
        ReportFormat::Json => "a JSON",
    };
    eprintln!(
        "ssm-audit: wrote {format} report of {} sessions to {}",
        report.totals.sessions, config.out
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::dataset::record::tests::record;
    use crate::dataset::schema::Packing;
    use crate::dataset::sha256_hex;
    use crate::storage::watched::Watched;
    use crate::storage::LocalStorage;

    fn config() -> ReportConfig {
        ReportConfig {
            input: Location::Local("in".into()),
            from: NaiveDate::from_ymd_opt(2026, 11, 1),
            to: NaiveDate::from_ymd_opt(2026, 11, 3),
            owners: vec![],
            targets: vec![],
            format: ReportFormat::Json,
            out: Destination::File("r.json".into()),
            presign: None,
            keys: VerifyKeys::default(),
            aws: AwsSettings::default(),
            s3: S3Settings::default(),
            clock: Clock::fixed(1_793_534_400_000),
        }
    }

    #[test]
    fn figures_cover_every_day_and_the_after_hours_rule() {
        // 2026-11-01 is a Sunday; 2026-11-02 a Monday.
        let sunday_noon = 1_793_534_400_000;
        let monday_9 = sunday_noon + 21 * 3_600_000;
        let monday_20 = monday_9 + 11 * 3_600_000;
        let mut failed = record("c", monday_20, "Failed", 1);
        failed.end_date = None;
        let sessions = vec![
            record("a", sunday_noon, "Terminated", 1),
            record("b", monday_9, "Terminated", 1),
            failed,
        ];
        let report = build(sessions, &config(), "in".into());
        assert_eq!(report.sessions_per_day.len(), 3);
        assert_eq!(
            report
                .sessions_per_day
                .iter()
                .map(|d| d.sessions)
                .collect::<Vec<_>>(),
            [1, 2, 0]
        );
        assert_eq!(report.totals.after_hours, 2, "Sunday noon and Monday 20:00");
        assert_eq!(report.totals.failed, 1);
        assert_eq!(report.totals.still_open, 1);
        assert_eq!(report.longest.len(), 2);
    }

    #[tokio::test]
    async fn a_period_is_listed_once_and_each_of_its_files_read_once_several_at_a_time() {
        let dir = tempfile::tempdir().expect("tempdir");
        let local = LocalStorage::new(dir.path());
        let day = |d: u32| NaiveDate::from_ymd_opt(2026, 11, d).expect("a date");
        let sunday_noon = 1_793_534_400_000;
        let mut in_period = Vec::new();
        // 3 days of the period and one after it, 10 (account, region) pairs.
        for d in 1..=4 {
            for pair in 0..10 {
                let key = PartitionKey {
                    date: day(d),
                    account_id: format!("1234567890{pair:02}"),
                    region: "eu-west-1".into(),
                }
                .key();
                let start = sunday_noon + i64::from(d - 1) * 86_400_000 + pair;
                let bytes = schema::write_parquet(
                    &[record(&format!("s-{d}-{pair}"), start, "Terminated", 1)],
                    Packing::Published,
                )
                .expect("encode");
                local.put(&key, bytes.clone().into()).await.expect("put");
                if d <= 3 {
                    in_period.push((key, sha256_hex(&bytes)));
                }
            }
        }
        local
            .put("sessions/notes.txt", Bytes::from_static(b"not data"))
            .await
            .expect("put");
        let unreadable = "sessions/dt=2026-11-02/123456789099_eu-west-1.parquet";
        local
            .put(unreadable, Bytes::from_static(b"not parquet"))
            .await
            .expect("put");
        let storage = Watched::new(local);

        let selected = select(&storage, &config()).await.expect("select");

        assert_eq!(storage.lists(), ["sessions/"], "one listing");
        assert_eq!(selected.sessions.len(), 30, "the period's sessions only");
        let mut expected_reads: BTreeMap<String, usize> =
            in_period.iter().map(|(key, _)| (key.clone(), 1)).collect();
        expected_reads.insert(unreadable.into(), 1);
        assert_eq!(
            storage.reads(),
            expected_reads,
            "each file of the period once"
        );
        let most = storage.most_reads_at_once();
        assert!(most > 1 && most <= REQUESTS_AT_ONCE, "{most} reads at once");
        // What was read is handed to the evidence as it was read.
        for (key, sha256) in &in_period {
            assert_eq!(&selected.files.read[key].sha256, sha256, "{key}");
        }
        assert!(selected.files.read.contains_key(unreadable));
        assert_eq!(selected.files.listed.len(), 42);
        assert_eq!(
            selected
                .skipped
                .iter()
                .map(|s| s.key.as_str())
                .collect::<Vec<_>>(),
            [unreadable, "sessions/notes.txt"]
        );
    }

    proptest::proptest! {
        #[test]
        fn report_times_print_as_the_strftime_form_did(millis in -62_167_219_200_000_i64..253_402_300_800_000) {
            let t = crate::time::utc(millis).expect("in the calendar");
            proptest::prop_assert_eq!(rfc3339(millis), t.format(RFC3339_MILLIS).to_string());
        }
    }
}
