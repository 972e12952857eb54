//! `ssm-audit coverage`: which time the completed runs crawled, per
//! (account, region), and the gaps. A run covers the window its manifest
//! records, minus the days it could not publish, and only if it listed
//! every session (no `--filter`, History included). DescribeSessions
//! forgets after 30 days, so a gap older than that is permanent: this is
//! the check a scheduler or an alarm runs each morning.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use crate::config::CoverageConfig;
use crate::dataset::layout::PartitionKey;
use crate::evidence::chain::{read_ledger, Entry, Ledger, Pair};
use crate::storage::Storage;

/// `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize)]
pub struct Span {
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
}

impl std::fmt::Display for Span {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "from {} to {} ({})",
            self.start.format("%Y-%m-%dT%H:%M:%SZ"),
            self.end.format("%Y-%m-%dT%H:%M:%SZ"),
            duration_text(self.end - self.start)
        )
    }
}

/// `2d 6h`, `5h 3m`, `42s`.
pub fn duration_text(d: Duration) -> String {
    let s = d.num_seconds().max(0);
    let (days, hours, minutes) = (s / 86_400, s % 86_400 / 3_600, s % 3_600 / 60);
    match (days, hours, minutes) {
        (0, 0, 0) => format!("{s}s"),
        (0, 0, m) => format!("{m}m"),
        (0, h, m) => format!("{h}h {m}m"),
        (d, h, _) => format!("{d}d {h}h"),
    }
}

/// What to check coverage against.
#[derive(Debug, Clone)]
pub struct CoverageOptions {
    /// The period that must be covered; an open end is the chain's first
    /// (or last) covered instant: the time after a chain's newest run is
    /// for `max_age` to judge, not a gap.
    pub period: Bounds,
    /// The newest completed run may be at most this old.
    pub max_age: Duration,
    pub now: DateTime<Utc>,
}

#[derive(Debug, Clone, Serialize)]
pub struct CoverageReport {
    pub now: DateTime<Utc>,
    pub max_age_seconds: i64,
    pub pairs: Vec<PairCoverage>,
}

#[derive(Debug, Clone, Serialize)]
pub struct PairCoverage {
    pub account_id: String,
    pub region: String,
    /// The period checked.
    pub period: Option<Span>,
    /// The union of the windows crawled, merged.
    pub covered: Vec<Span>,
    /// What of the period no completed run crawled.
    pub gaps: Vec<Span>,
    pub newest_run: Option<NewestRun>,
    /// The newest run is older than `--max-age`, or there is none.
    pub stale: bool,
}

#[derive(Debug, Clone, Serialize)]
pub struct NewestRun {
    pub run_id: String,
    pub finished_at: DateTime<Utc>,
    pub age_seconds: i64,
}

impl CoverageReport {
    pub fn is_complete(&self) -> bool {
        !self.pairs.is_empty() && self.pairs.iter().all(|p| p.gaps.is_empty() && !p.stale)
    }

    /// The UTC days of `[from, to]` (inclusive) that some gap touches.
    pub fn days_not_crawled(
        &self,
        from: chrono::NaiveDate,
        to: chrono::NaiveDate,
    ) -> Vec<chrono::NaiveDate> {
        let mut days: Vec<chrono::NaiveDate> = self
            .pairs
            .iter()
            .flat_map(|p| p.gaps.iter())
            .flat_map(|gap| {
                let last = (gap.end - Duration::milliseconds(1)).date_naive();
                gap.start
                    .date_naive()
                    .iter_days()
                    .take_while(move |d| *d <= last)
            })
            .filter(|d| (from..=to).contains(d))
            .collect();
        days.sort();
        days.dedup();
        days
    }
}

impl std::fmt::Display for CoverageReport {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        for pair in &self.pairs {
            let name = format!("{}/{}", pair.account_id, pair.region);
            match &pair.period {
                Some(period) => writeln!(f, "{name}: period {period}")?,
                None => writeln!(f, "{name}: no completed run covers any time")?,
            }
            for span in &pair.covered {
                writeln!(f, "  covered   {span}")?;
            }
            for gap in &pair.gaps {
                writeln!(f, "  GAP       {gap}")?;
            }
            match &pair.newest_run {
                Some(run) => writeln!(
                    f,
                    "  {}newest run {} finished {} ({} ago; --max-age {})",
                    if pair.stale { "STALE     " } else { "" },
                    run.run_id,
                    run.finished_at.format("%Y-%m-%dT%H:%M:%SZ"),
                    duration_text(Duration::seconds(run.age_seconds)),
                    duration_text(Duration::seconds(self.max_age_seconds))
                )?,
                None => writeln!(f, "  STALE     no completed run")?,
            }
        }
        let gaps: usize = self.pairs.iter().map(|p| p.gaps.len()).sum();
        let stale = self.pairs.iter().filter(|p| p.stale).count();
        write!(
            f,
            "{} (account, region) pairs: {gaps} gaps, {stale} stale",
            self.pairs.len()
        )
    }
}

/// `coverage` found a gap or a stale chain (exit code 8).
#[derive(Debug, thiserror::Error)]
#[error("the data set does not cover the period, or its newest run is older than --max-age")]
pub struct NotCovered;

#[derive(Debug, thiserror::Error)]
pub enum CoverageError {
    #[error(transparent)]
    Aws(#[from] crate::aws::AwsError),
    #[error(transparent)]
    Storage(#[from] crate::storage::StorageError),
    #[error(transparent)]
    NoDataSet(#[from] crate::evidence::verify::VerifyError),
}

/// A period whose ends may be open.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bounds {
    pub start: Option<DateTime<Utc>>,
    pub end: Option<DateTime<Utc>>,
}

/// The period of the UTC days `[from, to]` (inclusive), never past `now`
/// (time to come is not a gap).
pub fn period_of(
    from: Option<chrono::NaiveDate>,
    to: Option<chrono::NaiveDate>,
    now: DateTime<Utc>,
) -> Bounds {
    let day_start = |d: chrono::NaiveDate| d.and_hms_opt(0, 0, 0).map(|t| t.and_utc());
    Bounds {
        start: from.and_then(day_start),
        end: to
            .and_then(|d| d.succ_opt())
            .and_then(day_start)
            .map(|end| end.min(now)),
    }
}

/// The options of a `coverage` command.
pub fn options_of(config: &CoverageConfig) -> CoverageOptions {
    let now = config.clock.now();
    CoverageOptions {
        period: period_of(config.from, config.to, now),
        max_age: Duration::from_std(config.max_age).unwrap_or(Duration::MAX),
        now,
    }
}

/// Runs `coverage`: reads the data set and computes its coverage.
pub async fn run(config: &CoverageConfig) -> Result<CoverageReport, CoverageError> {
    let storage = crate::aws::storage_for(&config.output, None, &config.aws, &config.s3).await?;
    crate::evidence::verify::require_data_set(&storage).await?;
    Ok(coverage(&storage, &options_of(config)).await?)
}

/// Computes coverage for every (account, region) the manifests name.
pub async fn coverage<S: Storage>(
    storage: &S,
    options: &CoverageOptions,
) -> Result<CoverageReport, crate::storage::StorageError> {
    Ok(coverage_of(&read_ledger(storage).await?, options))
}

/// Coverage from manifests already read (a report verifies them too).
pub fn coverage_of(ledger: &Ledger, options: &CoverageOptions) -> CoverageReport {
    let mut runs: BTreeMap<Pair, Vec<&Entry>> = BTreeMap::new();
    for (pair, entries) in &ledger.chains {
        runs.entry(pair.clone()).or_default().extend(entries);
    }
    for entry in &ledger.unchained {
        let pair = (
            entry.manifest.account_id.clone(),
            entry.manifest.region.clone(),
        );
        runs.entry(pair).or_default().push(entry);
    }
    let pairs = runs
        .into_iter()
        .map(|(pair, entries)| pair_coverage(pair, &entries, options))
        .collect();
    CoverageReport {
        now: options.now,
        max_age_seconds: options.max_age.num_seconds(),
        pairs,
    }
}

fn pair_coverage(
    (account_id, region): Pair,
    entries: &[&Entry],
    options: &CoverageOptions,
) -> PairCoverage {
    let mut spans = Vec::new();
    let mut newest: Option<NewestRun> = None;
    for entry in entries {
        let manifest = &entry.manifest;
        let Some(crawled) = manifest.crawled().filter(|c| c.all_sessions) else {
            continue;
        };
        let unpublished: Vec<Span> = manifest
            .pending
            .iter()
            .filter_map(|p| PartitionKey::parse(&p.partition))
            .filter_map(|p| day_span(p.date))
            .collect();
        spans.extend(subtract(
            &[Span {
                start: crawled.start,
                end: crawled.end,
            }],
            &unpublished,
        ));
        if let Ok(finished) = DateTime::parse_from_rfc3339(&manifest.finished_at) {
            let finished = finished.with_timezone(&Utc);
            if newest.as_ref().is_none_or(|n| finished > n.finished_at) {
                newest = Some(NewestRun {
                    run_id: manifest.run_id.clone(),
                    finished_at: finished,
                    age_seconds: (options.now - finished).num_seconds(),
                });
            }
        }
    }
    let covered = merge(spans);
    let period = match (
        options.period.start.or(covered.first().map(|s| s.start)),
        options.period.end.or(covered.last().map(|s| s.end)),
    ) {
        (Some(start), Some(end)) if start < end => Some(Span { start, end }),
        _ => None,
    };
    let gaps = match period {
        Some(period) => subtract(&[period], &covered),
        None => Vec::new(),
    };
    let stale = newest
        .as_ref()
        .is_none_or(|n| n.age_seconds > options.max_age.num_seconds());
    PairCoverage {
        account_id,
        region,
        period,
        covered,
        gaps,
        newest_run: newest,
        stale,
    }
}

fn day_span(day: chrono::NaiveDate) -> Option<Span> {
    let start = day.and_hms_opt(0, 0, 0)?.and_utc();
    Some(Span {
        start,
        end: start + Duration::days(1),
    })
}

/// Sorted, disjoint, with touching spans joined.
fn merge(mut spans: Vec<Span>) -> Vec<Span> {
    spans.retain(|s| s.start < s.end);
    spans.sort();
    let mut merged: Vec<Span> = Vec::with_capacity(spans.len());
    for span in spans {
        match merged.last_mut() {
            Some(last) if span.start <= last.end => last.end = last.end.max(span.end),
            _ => merged.push(span),
        }
    }
    merged
}

/// `from` minus `holes`.
fn subtract(from: &[Span], holes: &[Span]) -> Vec<Span> {
    let holes = merge(holes.to_vec());
    let mut out = Vec::new();
    for span in merge(from.to_vec()) {
        let mut start = span.start;
        for hole in holes
            .iter()
            .filter(|h| h.end > span.start && h.start < span.end)
        {
            if hole.start > start {
                out.push(Span {
                    start,
                    end: hole.start,
                });
            }
            start = start.max(hole.end);
        }
        if start < span.end {
            out.push(Span {
                start,
                end: span.end,
            });
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(day: u32, hour: u32) -> DateTime<Utc> {
        chrono::NaiveDate::from_ymd_opt(2026, 11, day)
            .and_then(|d| d.and_hms_opt(hour, 0, 0))
            .expect("a time")
            .and_utc()
    }

    fn span(a: (u32, u32), b: (u32, u32)) -> Span {
        Span {
            start: at(a.0, a.1),
            end: at(b.0, b.1),
        }
    }

    #[test]
    fn overlapping_nights_merge_and_a_missed_stretch_is_a_gap() {
        // Three nightly 30-day windows would overlap; here, short ones with
        // a hole between the second and the third.
        let covered = merge(vec![
            span((1, 0), (3, 0)),
            span((2, 0), (4, 0)),
            span((6, 12), (8, 0)),
            span((4, 0), (5, 0)),
        ]);
        assert_eq!(covered, vec![span((1, 0), (5, 0)), span((6, 12), (8, 0))]);
        let gaps = subtract(&[span((1, 0), (9, 0))], &covered);
        assert_eq!(gaps, vec![span((5, 0), (6, 12)), span((8, 0), (9, 0))]);
        assert!(subtract(&[span((2, 0), (4, 0))], &covered).is_empty());
        let report = CoverageReport {
            now: at(9, 0),
            max_age_seconds: 0,
            pairs: vec![PairCoverage {
                account_id: "123456789012".into(),
                region: "eu-west-1".into(),
                period: None,
                covered,
                gaps,
                newest_run: None,
                stale: false,
            }],
        };
        let day = |d| chrono::NaiveDate::from_ymd_opt(2026, 11, d).expect("a day");
        assert_eq!(
            report.days_not_crawled(day(1), day(30)),
            vec![day(5), day(6), day(8)]
        );
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(duration_text(Duration::seconds(42)), "42s");
        assert_eq!(duration_text(Duration::minutes(5)), "5m");
        assert_eq!(duration_text(Duration::minutes(303)), "5h 3m");
        assert_eq!(duration_text(Duration::hours(54)), "2d 6h");
    }
}
