//! The run's metrics as CloudWatch Embedded Metric Format: one JSON line per
//! (account, region) and one for the run, printed on stdout when an export
//! ends, so that CloudWatch Logs turns them into metrics and an alarm needs
//! no code. Namespace `ssm-audit`; per pair, dimensions `AccountId` and
//! `Region`; the run's line has no dimension. Coverage age is how long ago
//! the newest crawled window of a pair ended (a failed pair's from its last
//! completed run); the run reports the oldest of its pairs.

use serde_json::{json, Value};

use super::{ExportError, ExportSummary, RunOutcome};

/// The namespace the metrics land in.
pub const NAMESPACE: &str = "ssm-audit";

/// One EMF document: `values` are the metrics (name, unit, value) and the
/// dimension values.
fn document(at_ms: i64, dimensions: &[(&str, &str)], values: &[(&str, &str, f64)]) -> Value {
    let mut doc = json!({
        "_aws": {
            "Timestamp": at_ms,
            "CloudWatchMetrics": [{
                "Namespace": NAMESPACE,
                "Dimensions": [dimensions.iter().map(|(name, _)| *name).collect::<Vec<_>>()],
                "Metrics": values
                    .iter()
                    .map(|(name, unit, _)| json!({ "Name": name, "Unit": unit }))
                    .collect::<Vec<_>>(),
            }],
        },
    });
    for (name, value) in dimensions {
        doc[*name] = json!(value);
    }
    for (name, _, value) in values {
        doc[*name] = json!(value);
    }
    doc
}

/// Seconds from the end of what a pair has covered to `at_ms`.
fn age_seconds(at_ms: i64, covered_until: chrono::DateTime<chrono::Utc>) -> f64 {
    ((at_ms - covered_until.timestamp_millis()) as f64 / 1000.0).max(0.0)
}

/// How old a completed pair's coverage is: the end of the window it just
/// crawled.
fn completed_age(at_ms: i64, summary: &ExportSummary) -> Option<f64> {
    chrono::DateTime::parse_from_rfc3339(&summary.window_end)
        .ok()
        .map(|end| age_seconds(at_ms, end.to_utc()))
}

fn pair_document(at_ms: i64, summary: &ExportSummary) -> Value {
    let mut values = vec![
        (
            "SessionsExported",
            "Count",
            summary.sessions.distinct as f64,
        ),
        ("DescribeSessionsCalls", "Count", summary.api.calls as f64),
        ("Throttles", "Count", summary.api.throttled as f64),
        ("Retries", "Count", summary.api.retries as f64),
        ("PairFailed", "Count", 0.0),
    ];
    if let Some(age) = completed_age(at_ms, summary) {
        values.push(("CoverageAgeSeconds", "Seconds", age));
    }
    document(
        at_ms,
        &[
            ("AccountId", &summary.account_id),
            ("Region", &summary.region),
        ],
        &values,
    )
}

/// The lines for an export that took `seconds` and ended at `at_ms`.
pub fn emf_lines(
    outcome: &Result<RunOutcome, ExportError>,
    seconds: f64,
    at_ms: i64,
) -> Vec<Value> {
    type Failed<'a> = (&'a str, &'a str, Option<chrono::DateTime<chrono::Utc>>);
    let (completed, failed): (Vec<&ExportSummary>, Vec<Failed>) = match outcome {
        Ok(RunOutcome::Planned(_)) => return Vec::new(),
        Ok(RunOutcome::Exported(summaries)) => (summaries.iter().collect(), Vec::new()),
        Err(ExportError::PartlyPublished { summary, .. }) => (vec![summary.as_ref()], Vec::new()),
        Err(ExportError::PairsFailed {
            completed, failed, ..
        }) => (
            completed.iter().collect(),
            failed
                .iter()
                .map(|f| (f.account_id.as_str(), f.region.as_str(), f.covered_until))
                .collect(),
        ),
        Err(_) => (Vec::new(), Vec::new()),
    };
    let mut lines: Vec<Value> = completed.iter().map(|s| pair_document(at_ms, s)).collect();
    // The oldest coverage of the run: what an alarm on a pair left behind
    // for days watches.
    let mut oldest: Option<f64> = completed
        .iter()
        .filter_map(|s| completed_age(at_ms, s))
        .reduce(f64::max);
    for (account, region, covered_until) in &failed {
        let mut values = vec![("PairFailed", "Count", 1.0)];
        if let Some(until) = covered_until {
            let age = age_seconds(at_ms, *until);
            oldest = Some(oldest.map_or(age, |o| o.max(age)));
            values.push(("CoverageAgeSeconds", "Seconds", age));
        }
        lines.push(document(
            at_ms,
            &[("AccountId", account), ("Region", region)],
            &values,
        ));
    }
    let sum = |f: fn(&ExportSummary) -> u64| completed.iter().map(|s| f(s)).sum::<u64>() as f64;
    let run_failed = match outcome {
        Ok(_) => 0.0,
        Err(ExportError::PairsFailed {
            completed, earlier, ..
        }) => f64::from(u8::from(completed.is_empty() && *earlier == 0)),
        Err(ExportError::PartlyPublished { .. }) => 0.0,
        Err(_) => 1.0,
    };
    let mut run_values = vec![
        ("SessionsExported", "Count", sum(|s| s.sessions.distinct)),
        ("DescribeSessionsCalls", "Count", sum(|s| s.api.calls)),
        ("Throttles", "Count", sum(|s| s.api.throttled)),
        ("Retries", "Count", sum(|s| s.api.retries)),
        ("PairsCompleted", "Count", completed.len() as f64),
        ("FailedPairs", "Count", failed.len() as f64),
        ("RunFailed", "Count", run_failed),
        ("DurationSeconds", "Seconds", seconds),
    ];
    if let Some(age) = oldest {
        run_values.push(("MaxCoverageAgeSeconds", "Seconds", age));
    }
    lines.push(document(at_ms, &[], &run_values));
    lines
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_run_still_reports_that_it_failed() {
        let lines = emf_lines(&Err(ExportError::Interrupted), 2.5, 1_000);
        assert_eq!(lines.len(), 1);
        let run = &lines[0];
        assert_eq!(run["RunFailed"], 1.0);
        assert_eq!(run["DurationSeconds"], 2.5);
        assert_eq!(run["_aws"]["Timestamp"], 1_000);
        let metrics = &run["_aws"]["CloudWatchMetrics"][0];
        assert_eq!(metrics["Namespace"], NAMESPACE);
        assert_eq!(metrics["Dimensions"], json!([[]]));
        let names: Vec<&str> = metrics["Metrics"]
            .as_array()
            .expect("metrics")
            .iter()
            .map(|m| m["Name"].as_str().expect("name"))
            .collect();
        for name in names {
            assert!(run.get(name).is_some(), "{name} has a value");
        }
    }
}
