//! `ssm-audit verify` and `ssm-audit report` on real exports.

use std::path::Path;

use crate::common::*;
use crate::sim_model::SimSession;

const HOUR: i64 = 3_600_000;
const DAY: i64 = 24 * HOUR;

fn run(args: &[&str]) -> std::process::Output {
    ssm_audit().args(args).output().expect("ssm-audit runs")
}

fn exported(data: &[SimSession]) -> (tempfile::TempDir, Sim, tempfile::TempDir) {
    let (sim, data_dir) = Sim::with_sessions(data, &[]);
    let out = tempfile::tempdir().expect("tempdir");
    assert_success(&export(&sim, out.path(), &[]));
    (out, sim, data_dir)
}

fn verify(out: &Path) -> std::process::Output {
    run(&["verify", "--output", out.to_str().expect("utf-8")])
}

#[test]
fn verify_passes_a_clean_data_set_and_names_every_changed_missing_and_unlisted_file() {
    let data = generated(600, 61, &[]);
    let (out, sim, _d) = exported(&data);
    let clean = verify(out.path());
    assert_success(&clean);
    let text = String::from_utf8_lossy(&clean.stdout).into_owned();
    assert!(text.contains("0 changed, 0 missing, 0 unlisted"), "{text}");

    // A later run rewrites partitions: they are checked against it.
    assert_success(&export(&sim, out.path(), &[]));
    assert_success(&verify(out.path()));

    let files: Vec<String> = read_partitions(out.path())
        .into_iter()
        .map(|(path, _)| path)
        .collect();
    let altered = out.path().join(&files[0]);
    let mut bytes = std::fs::read(&altered).expect("read");
    bytes.push(0);
    std::fs::write(&altered, bytes).expect("alter");
    std::fs::remove_file(out.path().join(&files[1])).expect("delete");
    let stray = out
        .path()
        .join("sessions/dt=2020-01-01/123456789012_eu-west-1.parquet");
    std::fs::create_dir_all(stray.parent().expect("dir")).expect("mkdir");
    std::fs::write(&stray, b"not from any run").expect("add");

    let dirty = verify(out.path());
    assert_eq!(dirty.status.code(), Some(6), "{}", stderr(&dirty));
    let text = String::from_utf8_lossy(&dirty.stdout).into_owned();
    assert!(text.contains(&format!("CHANGED   {}", files[0])), "{text}");
    assert!(text.contains(&format!("MISSING   {}", files[1])), "{text}");
    assert!(
        text.contains("UNLISTED  sessions/dt=2020-01-01/123456789012_eu-west-1.parquet"),
        "{text}"
    );
    assert!(text.contains("1 changed, 1 missing, 1 unlisted"), "{text}");
    assert!(stderr(&dirty).contains("differs"), "{}", stderr(&dirty));

    let empty = tempfile::tempdir().expect("tempdir");
    let nothing = verify(empty.path());
    assert_eq!(
        nothing.status.code(),
        Some(2),
        "not a data set is a usage error"
    );
    assert!(
        stderr(&nothing).contains("holds no ssm-audit data set"),
        "{}",
        stderr(&nothing)
    );
}

/// Two owners, two targets over three days, with hostile and Unicode text.
fn audit_data() -> (Vec<SimSession>, i64) {
    let day0 = (now_ms() - 6 * DAY).div_euclid(DAY) * DAY;
    let mut data = Vec::new();
    for d in 0..3 {
        for (i, (owner, target)) in [
            ("alice", "i-0aaaaaaaaaaaaaaaa"),
            ("bob", "i-0bbbbbbbbbbbbbbbb"),
        ]
        .iter()
        .enumerate()
        {
            let mut s = session(
                &format!("{owner}-{d}"),
                day0 + d * DAY + (9 + i as i64) * HOUR,
            );
            s.owner = Some(format!("arn:aws:iam::{ACCOUNT}:user/{owner}"));
            s.target = Some(target.to_string());
            data.push(s);
        }
    }
    data[0].reason = Some("=HYPERLINK(\"http://evil.invalid\"),\"quoted\", 日本語".into());
    data[1].reason = Some("<script>document.title='pwned'</script>".into());
    data[2].status = Some("Failed".into());
    data[3].access_type = Some("JustInTime".into());
    (data, day0)
}

fn day(ms: i64) -> String {
    ssm_audit::dataset::layout::partition_date(ms)
        .expect("a day")
        .to_string()
}

#[test]
fn csv_and_json_reports_hold_the_period_and_filters_with_safe_cells() {
    let (data, day0) = audit_data();
    let (out, _sim, _d) = exported(&data);
    let input = out.path().to_str().expect("utf-8").to_owned();
    let reports = tempfile::tempdir().expect("tempdir");

    let csv_path = reports.path().join("r.csv");
    let result = run(&[
        "report",
        "--input",
        &input,
        "--format",
        "csv",
        "--out",
        csv_path.to_str().expect("utf-8"),
        "--from",
        &day(day0),
        "--to",
        &day(day0 + DAY),
    ]);
    assert_success(&result);
    let text = std::fs::read_to_string(&csv_path).expect("read");
    let mut reader = csv::Reader::from_reader(text.trim_start_matches('\u{feff}').as_bytes());
    let headers = reader.headers().expect("headers").clone();
    let rows: Vec<csv::StringRecord> = reader
        .records()
        .map(|r| r.expect("an RFC 4180 row"))
        .collect();
    assert_eq!(rows.len(), 4, "two days of two sessions");
    let column = |name: &str| headers.iter().position(|h| h == name).expect(name);
    let reason = &rows[0][column("reason")];
    assert_eq!(
        reason, "'=HYPERLINK(\"http://evil.invalid\"),\"quoted\", 日本語",
        "neutralised, quoted, Unicode kept"
    );
    assert_eq!(
        &rows[1][column("reason")],
        "<script>document.title='pwned'</script>"
    );
    assert!(!rows.is_empty());
    assert!(rows.iter().all(|r| r[column("start_date")].ends_with('Z')));

    let json_path = reports.path().join("r.json");
    let json_report = |extra: &[&str]| {
        let mut args = vec![
            "report",
            "--input",
            &input,
            "--format",
            "json",
            "--out",
            json_path.to_str().expect("utf-8"),
        ];
        args.extend_from_slice(extra);
        assert_success(&run(&args));
        serde_json::from_slice::<serde_json::Value>(&std::fs::read(&json_path).expect("read"))
            .expect("JSON")
    };
    let bob = format!("arn:aws:iam::{ACCOUNT}:user/bob");
    let report = json_report(&["--owner", &bob]);
    let sessions = report["sessions"].as_array().expect("sessions");
    assert_eq!(sessions.len(), 3);
    assert!(sessions
        .iter()
        .all(|s| s["owner"].as_str().is_some_and(|o| o.ends_with("/bob"))));
    assert_eq!(report["totals"]["just_in_time"], 1);
    assert_eq!(
        report["sessions_per_day"].as_array().expect("days").len(),
        3
    );

    let report = json_report(&[
        "--target",
        "i-0aaaaaaaaaaaaaaaa",
        "--from",
        &day(day0 + 2 * DAY),
    ]);
    assert_eq!(report["totals"]["sessions"], 1);
    assert_eq!(report["sessions"][0]["session_id"], "alice-2");
}

#[test]
fn bad_report_flags_exit_2() {
    let dir = tempfile::tempdir().expect("tempdir");
    let input = dir.path().to_str().expect("utf-8");
    let out = dir.path().join("r.html");
    let out = out.to_str().expect("utf-8");
    for (flags, expected) in [
        (vec!["--from", "2026-11-02", "--to", "2026-11-01"], "after"),
        (vec!["--from", "yesterday"], "not a date"),
        (vec!["--presign", "1h"], "s3://"),
        (
            vec!["--sse", "AES256"],
            "--sse applies to an s3:// --out only",
        ),
        (vec!["--format", "pdf"], "pdf"),
    ] {
        let mut args = vec!["report", "--input", input, "--out", out];
        args.extend(flags.iter().copied());
        assert_refused(&run(&args), 2, expected, &format!("{flags:?}"));
    }
    let too_long = run(&[
        "report",
        "--input",
        input,
        "--out",
        "s3://reports-bucket/r.html",
        "--presign",
        "8d",
    ]);
    assert_eq!(too_long.status.code(), Some(2));
    assert!(
        stderr(&too_long).contains("at most 7d"),
        "{}",
        stderr(&too_long)
    );
}

#[test]
fn a_missing_input_is_an_error_but_an_empty_period_of_a_data_set_reports_zero() {
    let (out, _sim, _d) = exported(&audit_data().0);
    let input = out.path().to_str().expect("utf-8");
    let dir = tempfile::tempdir().expect("tempdir");
    let report = dir.path().join("r.json");
    let report_arg = report.to_str().expect("utf-8");

    let empty_folder = dir.path().to_str().expect("utf-8");
    for (bad_input, expected) in [
        ("/nonexistent/audit", "holds no ssm-audit data set"),
        (empty_folder, "holds no ssm-audit data set"),
        ("S3://bucket/audit", "s3://bucket/audit"),
    ] {
        let result = run(&["report", "--input", bad_input, "--out", report_arg]);
        assert_refused(&result, 2, expected, bad_input);
    }

    let empty_period = run(&[
        "report",
        "--input",
        input,
        "--out",
        report_arg,
        "--format",
        "json",
        "--from",
        "2001-01-01",
        "--to",
        "2001-12-31",
    ]);
    assert!(empty_period.status.success(), "{}", stderr(&empty_period));
    let document: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&report).expect("written")).expect("json");
    assert_eq!(document["totals"]["sessions"], 0);
}

/// A report states its verification and coverage in every format: the days
/// no completed run crawled are named, and a changed file turns it to
/// "findings".
#[test]
fn reports_state_verification_and_the_days_no_run_crawled() {
    let day = |d: u32| format!("2026-10-{d:02}T00:00:00Z");
    let data = generated(300, 63, &[]);
    let (sim, _d) = Sim::with_sessions(&data, &[]);
    let out = tempfile::tempdir().expect("tempdir");
    for (since, until) in [(10, 14), (16, 20)] {
        assert_success(&export(
            &sim,
            out.path(),
            &["--since", &day(since), "--until", &day(until)],
        ));
    }
    let reports = tempfile::tempdir().expect("tempdir");
    let input = out.path().to_str().expect("utf-8");
    let report = |format: &str, name: &str| {
        let path = reports.path().join(name);
        let result = run(&[
            "report",
            "--input",
            input,
            "--from",
            "2026-10-10",
            "--to",
            "2026-10-19",
            "--format",
            format,
            "--out",
            path.to_str().expect("utf-8"),
        ]);
        assert_success(&result);
        path
    };
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report("json", "r.json")).expect("read"))
            .expect("json");
    let evidence = &json["evidence"];
    assert_eq!(evidence["verified"], true, "{evidence}");
    assert_eq!(evidence["fully_covered"], false, "{evidence}");
    assert_eq!(
        evidence["days_not_crawled"],
        serde_json::json!(["2026-10-14", "2026-10-15"])
    );

    let html = std::fs::read_to_string(report("html", "r.html")).expect("read");
    assert!(
        html.contains("not crawled: 2026-10-14, 2026-10-15"),
        "{html}"
    );
    let csv = report("csv", "r.csv");
    let sidecar =
        std::fs::read_to_string(csv.with_file_name("r.csv.evidence.txt")).expect("sidecar");
    assert!(sidecar.contains("Verification: clean"), "{sidecar}");
    assert!(
        sidecar.contains("NOT CRAWLED: 2026-10-14, 2026-10-15"),
        "{sidecar}"
    );

    let partition = read_partitions(out.path())[0].0.clone();
    let mut bytes = std::fs::read(out.path().join(&partition)).expect("read");
    bytes.push(0);
    std::fs::write(out.path().join(&partition), bytes).expect("alter");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(report("json", "r2.json")).expect("read"))
            .expect("json");
    assert_eq!(json["evidence"]["verified"], false);
    let findings = json["evidence"]["findings"].to_string();
    assert!(
        findings.contains("CHANGED") && findings.contains(&partition),
        "{findings}"
    );
}
