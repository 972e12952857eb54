//! Crash safety: kill -9 at many moments, SIGTERM, expired tokens, changed
//! flags, corrupt checkpoints and the output lock, all with the real binary.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::common::*;
use ssm_audit::api::SessionState;
use ssm_audit::dataset::record::SessionRecord;
use ssm_audit::export::checkpoint::Checkpoint;
use ssm_audit::export::stage::part_key;

fn spawn_export(sim: &Sim, output: &Path, extra: &[&str]) -> Child {
    export_command(sim, output, extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("ssm-audit starts")
}

/// Polls `condition` every few milliseconds until it holds or `limit` passes.
fn wait_until(limit: Duration, mut condition: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if condition() {
            return true;
        }
        std::thread::sleep(Duration::from_millis(2));
    }
    false
}

/// Starts an export and kills it with SIGKILL once the simulator has
/// answered `target` DescribeSessions calls; fails when the export ended
/// first (a kill after the run would test nothing). The export's status.
fn kill_9_at_call(sim: &Sim, output: &Path, target: u64) -> std::process::ExitStatus {
    let mut child = spawn_export(sim, output, CRAWL);
    let reached = wait_until(Duration::from_secs(60), || {
        sim.stat("describe_ok") >= target || child.try_wait().expect("wait").is_some()
    });
    assert!(reached, "the crawl stalled before call {target}");
    assert!(
        child.try_wait().expect("wait").is_none(),
        "the run ended before call {target}, so it was not killed mid-crawl"
    );
    child.kill().expect("kill -9");
    child.wait().expect("reap")
}

/// Rows without the seen-at times, which depend on when they were crawled.
fn comparable(rows: std::collections::BTreeMap<String, SessionRecord>) -> Vec<SessionRecord> {
    rows.into_values()
        .map(|mut r| {
            r.first_seen_at = 0;
            r.last_seen_at = 0;
            r
        })
        .collect()
}

const CRAWL: &[&str] = &["--page-size", "40", "--slice", "12h", "--concurrency", "3"];

#[test]
fn kill_9_at_many_moments_then_resume_gives_exactly_the_uninterrupted_rows() {
    let data = generated(
        3000,
        77,
        &[
            "--bursts",
            "3",
            "--burst-size",
            "100",
            "--active-share",
            "0.05",
        ],
    );
    let slow = ["--latency", "4ms", "--jitter", "4ms"];

    let (reference_sim, _d1) = Sim::with_sessions(&data, &slow);
    let reference_out = tempfile::tempdir().expect("tempdir");
    assert_success(&export(&reference_sim, reference_out.path(), CRAWL));
    let reference_calls = reference_sim.stat("describe_ok");
    let reference = comparable(read_rows(reference_out.path()));
    assert_eq!(reference.len(), data.len());

    let (sim, _d2) = Sim::with_sessions(&data, &slow);
    let out = tempfile::tempdir().expect("tempdir");
    let mut rng = fastrand::Rng::with_seed(2026);
    // Four kills at random moments of the crawl, each later than the last,
    // then one during the final publish.
    let mut kills = Vec::new();
    for round in 0..4u64 {
        let target = sim.stat("describe_ok") + rng.u64(5..25) + round;
        let status = kill_9_at_call(&sim, out.path(), target);
        kills.push(format!("round {round} at call {target}: {status}"));
    }
    let mut child = spawn_export(&sim, out.path(), CRAWL);
    let sessions_dir = out.path().join("sessions");
    let publishing = wait_until(Duration::from_secs(120), || {
        sessions_dir.exists() || child.try_wait().expect("wait").is_some()
    });
    assert!(publishing);
    assert!(
        child.try_wait().expect("wait").is_none(),
        "the run finished before it could be killed during publish"
    );
    child.kill().expect("kill -9 during publish");
    child.wait().expect("reap");
    let partial = read_partitions(out.path()).len();
    kills.push(format!("during publish, after {partial} partitions"));

    let mut attempts = 0;
    loop {
        attempts += 1;
        let result = export(&sim, out.path(), CRAWL);
        if result.status.success() {
            assert!(stderr(&result).contains("resumed"), "{}", stderr(&result));
            break;
        }
        assert!(
            attempts < 3,
            "resume failed: {}\nkills: {kills:?}",
            stderr(&result)
        );
    }
    assert_eq!(
        comparable(read_rows(out.path())),
        reference,
        "kills: {kills:?}"
    );
    for dir in std::fs::read_dir(out.path().join("sessions")).expect("sessions") {
        for file in std::fs::read_dir(dir.expect("dir").path()).expect("partition") {
            let name = file
                .expect("file")
                .file_name()
                .to_string_lossy()
                .into_owned();
            assert!(
                name.ends_with(".parquet") && !name.starts_with('.'),
                "left behind: {name}"
            );
        }
    }

    // Every kill loses at most the pages in flight, queued, or staged since
    // the last checkpoint save: a few pages per worker, never a slice.
    let total_calls = sim.stat("describe_ok");
    let concurrency = 3;
    assert!(
        total_calls <= reference_calls + kills.len() as u64 * 5 * concurrency,
        "{total_calls} calls across attempts vs {reference_calls} uninterrupted; kills: {kills:?}"
    );
    assert_eq!(checkpoint(out.path())["status"], "complete");
    // The parts read back from earlier attempts go with the last run's own.
    let staged = out
        .path()
        .join(format!("_checkpoint/{ACCOUNT}_{REGION}/staged"));
    let left: Vec<_> = std::fs::read_dir(&staged)
        .map(|entries| entries.map(|e| e.expect("entry").file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "staged parts left behind: {left:?}");
}

#[test]
fn a_second_night_killed_mid_crawl_resumes_its_planned_windows_exactly() {
    let data = generated(
        3000,
        78,
        &[
            "--skew-share",
            "0.6",
            "--bursts",
            "2",
            "--burst-size",
            "100",
        ],
    );
    let slow = ["--latency", "4ms", "--jitter", "4ms"];
    let (reference_sim, _d1) = Sim::with_sessions(&data, &slow);
    let reference_out = tempfile::tempdir().expect("tempdir");
    for _night in 0..2 {
        assert_success(&export(&reference_sim, reference_out.path(), CRAWL));
    }
    let reference = comparable(read_rows(reference_out.path()));
    assert_eq!(reference.len(), data.len());

    let (sim, _d2) = Sim::with_sessions(&data, &slow);
    let out = tempfile::tempdir().expect("tempdir");
    assert_success(&export(&sim, out.path(), CRAWL));
    let planned_before = planned_windows(out.path());
    assert!(planned_before.is_empty(), "a first night plans nothing");
    let mut rng = fastrand::Rng::with_seed(78);
    let mut planned = Vec::new();
    for round in 0..2u64 {
        let target = sim.stat("describe_ok") + rng.u64(4..12) + round;
        kill_9_at_call(&sim, out.path(), target);
        planned.push(planned_windows(out.path()));
    }
    // The windows the second night planned are the ones it resumes.
    assert!(planned[0].len() >= 2, "{:?}", planned[0]);
    assert_eq!(planned[0], planned[1]);
    let result = export(&sim, out.path(), CRAWL);
    assert_success(&result);
    assert!(stderr(&result).contains("resumed"), "{}", stderr(&result));
    assert_eq!(planned_windows(out.path()), planned[0]);
    assert_eq!(comparable(read_rows(out.path())), reference);
}

/// The windows of the checkpoint that were cut from the last night's
/// layout, as the checkpoint names them.
fn planned_windows(output: &Path) -> Vec<String> {
    checkpoint(output)["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter(|j| j["planned_pages"].is_u64())
        .map(|j| j["covers"].as_str().expect("covers").to_owned())
        .collect()
}

#[test]
fn sigterm_stops_within_ten_seconds_with_exit_4_and_the_rerun_resumes_without_recrawling() {
    let data = generated(1200, 78, &[]);
    let (sim, _d) = Sim::with_sessions(&data, &["--latency", "150ms"]);
    let out = tempfile::tempdir().expect("tempdir");
    let mut child = spawn_export(&sim, out.path(), CRAWL);
    assert!(wait_until(Duration::from_secs(60), || sim
        .stat("describe_ok")
        >= 12));
    let sent = Instant::now();
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .expect("kill runs");
    assert!(status.success());
    let exit = child.wait().expect("reap");
    let elapsed = sent.elapsed();
    let mut err = String::new();
    std::io::Read::read_to_string(child.stderr.as_mut().expect("stderr"), &mut err)
        .expect("stderr");
    assert_eq!(exit.code(), Some(4), "{err}");
    assert!(elapsed < Duration::from_secs(10), "took {elapsed:?}");
    assert!(err.contains("rerunning the same command resumes"), "{err}");
    assert!(!out.path().join(LOCK_FILE).exists(), "the lock is released");
    assert!(
        read_partitions(out.path()).is_empty(),
        "nothing partial is published"
    );

    let saved = checkpoint(out.path());
    assert_eq!(saved["status"], "in_progress");
    let done_jobs = saved["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .filter(|j| j["status"] == "done" || j["status"] == "split")
        .count();
    assert!(done_jobs > 0, "some windows finished before the signal");
    let first_calls = sim.stat("describe_ok");

    assert_success(&export(&sim, out.path(), CRAWL));
    let rows = read_rows(out.path());
    assert_eq!(rows.len(), data.len());
    for s in &data {
        assert_same_session(&rows[&s.session_id], s);
    }
    let second_calls = sim.stat("describe_ok") - first_calls;
    let total_jobs = saved["jobs"].as_array().expect("jobs").len() as u64;
    let pages_done: u64 = saved["jobs"]
        .as_array()
        .expect("jobs")
        .iter()
        .map(|j| j["pages_done"].as_u64().expect("n"))
        .sum();
    // The resumed run fetches only what the checkpoint did not record.
    let m = crate::common::manifest_files(out.path()).len();
    assert_eq!(m, 1);
    let (reference_sim, _d2) = Sim::with_sessions(&data, &[]);
    let reference_out = tempfile::tempdir().expect("tempdir");
    assert_success(&export(&reference_sim, reference_out.path(), CRAWL));
    let reference_calls = reference_sim.stat("describe_ok");
    assert!(
        second_calls + pages_done <= reference_calls + 3,
        "resume made {second_calls} calls on top of {pages_done} checkpointed pages; an uninterrupted run makes {reference_calls} ({total_jobs} jobs)"
    );
}

#[test]
fn an_expired_token_restarts_its_slice_with_a_warning_and_loses_nothing() {
    let data = generated(600, 79, &["--active-share", "0"]);
    let sim_args = ["--latency", "30ms", "--token-lifetime", "300ms"];
    let (sim, _d) = Sim::with_sessions(&data, &sim_args);
    let out = tempfile::tempdir().expect("tempdir");
    let flags = [
        "--page-size",
        "5",
        "--slice",
        "30d",
        "--state",
        "history",
        "--concurrency",
        "1",
    ];
    let mut child = spawn_export(&sim, out.path(), &flags);
    let has_token = wait_until(Duration::from_secs(60), || {
        std::fs::read(checkpoint_path(out.path()))
            .ok()
            .and_then(|b| serde_json::from_slice::<serde_json::Value>(&b).ok())
            .is_some_and(|c| {
                c["jobs"]
                    .as_array()
                    .is_some_and(|j| j.iter().any(|j| j["next_token"].is_string()))
            })
    });
    assert!(has_token);
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    // Outlive the simulator's 300 ms token lifetime.
    std::thread::sleep(Duration::from_millis(400));

    let result = export(&sim, out.path(), &flags);
    assert_success(&result);
    assert!(
        stderr(&result).contains("refused the NextToken"),
        "{}",
        stderr(&result)
    );
    let manifests: Vec<_> = crate::common::manifest_files(out.path())
        .into_iter()
        .map(|path| std::fs::read(path).expect("read"))
        .collect();
    assert_eq!(manifests.len(), 1);
    let manifest: serde_json::Value = serde_json::from_slice(&manifests[0]).expect("json");
    assert_eq!(manifest["api"]["token_restarts"], 1, "{manifest}");
    let rows = read_rows(out.path());
    let history: Vec<_> = data
        .iter()
        .filter(|s| s.end_date.is_some() || s.status.as_deref() != Some("Connected"))
        .collect();
    assert_eq!(rows.len(), history.len());
    for s in history {
        assert_same_session(&rows[&s.session_id], s);
    }
    assert!(
        sim.stat("client_errors") >= 1,
        "the stale token was refused"
    );
}

/// Leaves an unfinished checkpoint behind, as a killed run would.
fn interrupted_run(sim: &Sim, out: &Path) {
    let mut child = spawn_export(sim, out, CRAWL);
    assert!(wait_until(Duration::from_secs(60), || sim
        .stat("describe_ok")
        >= 8));
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    assert_eq!(checkpoint(out)["status"], "in_progress");
}

/// Kills an export once it has staged at least `parts` pages (answered
/// calls say nothing about staging on a loaded machine).
fn interrupted_after_vouching(sim: &Sim, out: &Path, parts: usize) -> Vec<PathBuf> {
    let mut child = spawn_export(sim, out, CRAWL);
    // Staged is not yet vouched for: a part written just before the kill
    // may not be in the checkpoint, and is then an orphan, not a loss.
    assert!(wait_until(Duration::from_secs(60), || vouched_parts(out)
        .len()
        >= parts));
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    assert_eq!(checkpoint(out)["status"], "in_progress");
    vouched_parts(out)
}

/// The staged parts the checkpoint in `out` vouches for (those of pages
/// its jobs count as done), in key order; none while it cannot be read.
fn vouched_parts(out: &Path) -> Vec<PathBuf> {
    let Ok(bytes) = std::fs::read(checkpoint_path(out)) else {
        return Vec::new();
    };
    let Ok(saved) = serde_json::from_slice::<Checkpoint>(&bytes) else {
        return Vec::new();
    };
    let staged = out.join(format!("_checkpoint/{ACCOUNT}_{REGION}/staged"));
    let mut parts: Vec<PathBuf> = saved
        .jobs
        .iter()
        .flat_map(|job| (0..job.pages_done).map(move |seq| part_key("", job.state, job.id, seq)))
        .map(|key| staged.join(key))
        // An empty page is done but has no part.
        .filter(|path| path.exists())
        .collect();
    parts.sort();
    parts
}

#[test]
fn a_checkpoint_for_other_flags_is_refused_until_restart() {
    let data = generated(400, 80, &[]);
    let (sim, _d) = Sim::with_sessions(&data, &["--latency", "20ms"]);
    let out = tempfile::tempdir().expect("tempdir");
    interrupted_run(&sim, out.path());

    let mut other_flags = CRAWL.to_vec();
    other_flags.extend(["--state", "history"]);
    let refused = export(&sim, out.path(), &other_flags);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    let text = stderr(&refused);
    assert!(
        text.contains("different flags") && text.contains("states") && text.contains("--restart"),
        "{text}"
    );
    assert!(text.contains("checkpoint.json"), "{text}");

    other_flags.push("--restart");
    assert_success(&export(&sim, out.path(), &other_flags));
    let rows = read_rows(out.path());
    let history = data
        .iter()
        .filter(|s| SessionState::of_status(s.status.as_deref()) == SessionState::History)
        .count();
    assert!(history > 0, "the data holds ended sessions");
    assert_eq!(rows.len(), history, "--state history crawled History only");
    assert!(rows
        .values()
        .all(|r| r.end_date.is_some() || r.status.as_deref() != Some("Connected")));
}

/// The slice only floors the splits still to come, so a rerun of a killed
/// night under another `--slice` resumes it, and its rows are the rows of
/// an uninterrupted crawl under the first slice.
#[test]
fn a_crawl_killed_under_one_slice_resumes_under_another_with_the_same_rows() {
    let data = generated(400, 81, &["--active-share", "0.05"]);
    let (reference_sim, _d1) = Sim::with_sessions(&data, &[]);
    let reference_out = tempfile::tempdir().expect("tempdir");
    assert_success(&export(&reference_sim, reference_out.path(), CRAWL));
    let reference = comparable(read_rows(reference_out.path()));
    assert_eq!(reference.len(), data.len());

    let (sim, _d2) = Sim::with_sessions(&data, &["--latency", "20ms"]);
    let out = tempfile::tempdir().expect("tempdir");
    interrupted_run(&sim, out.path());

    let other_slice: Vec<&str> = CRAWL
        .iter()
        .map(|flag| if *flag == "12h" { "1h" } else { flag })
        .collect();
    assert_ne!(other_slice, CRAWL, "the rerun asks for another slice");
    let resumed = export(&sim, out.path(), &other_slice);
    assert_success(&resumed);
    assert!(stderr(&resumed).contains("resumed"), "{}", stderr(&resumed));
    assert_eq!(comparable(read_rows(out.path())), reference);
}

#[test]
fn a_corrupt_checkpoint_is_named_kept_and_recovered_by_restart() {
    let data = generated(300, 81, &[]);
    let (sim, _d) = Sim::with_sessions(&data, &["--latency", "20ms"]);
    let out = tempfile::tempdir().expect("tempdir");
    interrupted_run(&sim, out.path());
    let path = checkpoint_path(out.path());
    let bytes = std::fs::read(&path).expect("read");
    std::fs::write(&path, &bytes[..bytes.len() / 2]).expect("truncate");

    let refused = export(&sim, out.path(), CRAWL);
    assert_eq!(refused.status.code(), Some(2), "{}", stderr(&refused));
    assert!(
        stderr(&refused).contains(&path.display().to_string()),
        "{}",
        stderr(&refused)
    );
    assert_eq!(
        std::fs::read(&path).expect("kept"),
        &bytes[..bytes.len() / 2],
        "nothing deleted"
    );

    std::fs::write(&path, br#"{"format_version": 7}"#).expect("write");
    let refused = export(&sim, out.path(), CRAWL);
    assert_eq!(refused.status.code(), Some(2));
    assert!(
        stderr(&refused).contains("format version 7"),
        "{}",
        stderr(&refused)
    );

    let mut restart = CRAWL.to_vec();
    restart.push("--restart");
    assert_success(&export(&sim, out.path(), &restart));
    assert_eq!(read_rows(out.path()).len(), data.len());
}

fn write_lock(out: &Path, host: &str, pid: u32, lease_ms: u64) {
    let lock = serde_json::json!({
        "host": host, "pid": pid, "run_id": "20261127T000000Z-holder",
        "started_at": "2026-11-27T00:00:00+00:00",
        "lease_ms": lease_ms,
        "lease_expires_at": "2026-11-27T00:01:00+00:00",
    });
    std::fs::create_dir_all(out.join("_locks")).expect("mkdir");
    std::fs::write(out.join(LOCK_FILE), lock.to_string()).expect("write lock");
}

/// An export that holds its lock for a few seconds, renewing it every
/// 300 ms, with a clock `skew` away from this machine's (libfaketime).
fn long_export_with_skewed_clock(sim: &Sim, out: &Path, skew: &str) -> Child {
    let faketime = which_faketime();
    let cmd = export_command(sim, out, &["--concurrency", "1", "--page-size", "20"]);
    let program = cmd.get_program().to_owned();
    let args: Vec<_> = cmd.get_args().map(|a| a.to_owned()).collect();
    let mut skewed = Command::new(faketime);
    skewed.arg("-f").arg(skew).arg(program).args(args);
    for (key, value) in cmd.get_envs() {
        match value {
            Some(value) => skewed.env(key, value),
            None => skewed.env_remove(key),
        };
    }
    skewed
        // The system's (faked) clock, not the tests' pinned one.
        .env_remove("SSM_AUDIT_CLOCK_START")
        .env("SSM_AUDIT_LOCK_LEASE", "900ms")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("faketime ssm-audit starts")
}

fn which_faketime() -> std::path::PathBuf {
    let found = std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join("faketime"))
            .find(|p| p.exists())
    });
    found.expect("Debian's faketime is needed (apt-get install faketime; .ci/run installs it)")
}

#[test]
fn a_live_holder_whose_clock_is_minutes_behind_keeps_its_lock() {
    // Every session open: the holder runs on the machine's (skewed) clock,
    // not the tests' pinned one, so its History window may miss data made
    // at the pinned date; Active has no window, and paging its 600 sessions
    // keeps the holder busy whatever the date.
    let data = generated(600, 81, &["--active-share", "1", "--bursts", "0"]);
    let (sim, _d) = Sim::with_sessions(&data, &["--latency", "150ms"]);
    let out = tempfile::tempdir().expect("tempdir");
    let mut holder = long_export_with_skewed_clock(&sim, out.path(), "-10m");
    assert!(wait_until(Duration::from_secs(60), || out
        .path()
        .join(LOCK_FILE)
        .exists()));
    // By the holder's clock its lease ran out ten minutes ago; it renews, so
    // the lock is live, and a second run on this machine's clock says so.
    let second = export_command(&sim, out.path(), &[])
        .env_remove("SSM_AUDIT_CLOCK_START")
        .output()
        .expect("runs");
    assert_refused(&second, 5, "another export holds the lock", "second");
    // The holder named is the skewed one: its lease "ended" minutes ago.
    let text = stderr(&second);
    let until = text
        .split("lease until ")
        .nth(1)
        .and_then(|rest| rest.split(' ').next())
        .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        .expect("the lease's end is named");
    assert!(
        until.timestamp_millis() < chrono::Utc::now().timestamp_millis() - 5 * 60_000,
        "{text}"
    );
    let status = holder.wait().expect("holder finishes");
    assert!(status.success(), "the holder kept its lock to the end");
}

#[test]
fn a_lock_nobody_renews_is_taken_over_after_its_lease_and_garbage_is_watched_too() {
    let data = generated(200, 82, &[]);
    let (sim, _d) = Sim::with_sessions(&data, &[]);
    let out = tempfile::tempdir().expect("tempdir");

    // On another host, whatever its clock said: stale once it has not
    // changed for its lease (500 ms), on the taker's clock.
    write_lock(out.path(), "ecs-task-elsewhere", 1, 500);
    let taken = export(&sim, out.path(), &[]);
    assert_success(&taken);
    assert!(
        stderr(&taken).contains("taking over a stale output lock"),
        "{}",
        stderr(&taken)
    );
    assert_eq!(read_rows(out.path()).len(), data.len());
    assert!(!out.path().join(LOCK_FILE).exists());

    // Not a lock file: watched for the taker's own lease, then taken over.
    std::fs::create_dir_all(out.path().join("_locks")).expect("mkdir");
    std::fs::write(out.path().join(LOCK_FILE), "garbage").expect("write");
    let taken = export(&sim, out.path(), &["--lock-lease", "500ms"]);
    assert_success(&taken);
    assert!(
        stderr(&taken).contains("did not change for a whole lease"),
        "{}",
        stderr(&taken)
    );
}

#[test]
fn two_runs_at_once_on_one_output_exactly_one_proceeds() {
    let data = generated(500, 83, &[]);
    let (sim, _d) = Sim::with_sessions(&data, &["--latency", "150ms"]);
    let out = tempfile::tempdir().expect("tempdir");
    // The holder renews during its 2 s crawl; each renewal may take a third
    // of a second (a sixth of the lease) on a loaded disk before it counts
    // as lost (the S3 twin of this test lost its lease at 600 ms).
    let flags = [
        "--page-size",
        "40",
        "--concurrency",
        "1",
        "--lock-lease",
        "2s",
    ];
    let mut first = spawn_export(&sim, out.path(), &flags);
    assert!(wait_until(Duration::from_secs(60), || out
        .path()
        .join(LOCK_FILE)
        .exists()));
    let second = export(&sim, out.path(), &flags);
    assert_refused(&second, 5, "another export holds the lock", "second");
    assert!(first.wait().expect("first finishes").success());
    assert_eq!(read_rows(out.path()).len(), data.len());
}

#[test]
fn a_write_error_stops_the_run_clearly_and_the_rerun_resumes_from_the_last_durable_state() {
    let data = generated(400, 84, &[]);
    let (sim, _d) = Sim::with_sessions(&data, &[]);
    let out = tempfile::tempdir().expect("tempdir");
    // A file where the partitions' folder must go: every partition write fails.
    std::fs::write(out.path().join("sessions"), "in the way").expect("write");
    let failed = export(&sim, out.path(), CRAWL);
    assert_eq!(failed.status.code(), Some(1), "{}", stderr(&failed));
    let text = stderr(&failed);
    assert!(
        text.contains("/sessions") && text.contains("rerunning"),
        "{text}"
    );
    let saved = checkpoint(out.path());
    assert_eq!(saved["status"], "in_progress");
    let jobs = saved["jobs"].as_array().expect("jobs");
    assert!(!jobs.is_empty(), "the checkpoint lists its jobs");
    assert!(jobs
        .iter()
        .all(|j| j["status"] == "done" || j["status"] == "split"));
    let calls = sim.stat("describe_ok");

    std::fs::remove_file(out.path().join("sessions")).expect("clear the way");
    assert_success(&export(&sim, out.path(), CRAWL));
    // Nothing fetched again; at most one call for the seconds between the
    // two runs (a resumed window that ends now extends to the rerun's now).
    assert!(
        sim.stat("describe_ok") <= calls + 1,
        "the crawl was durable: {} calls after {calls}",
        sim.stat("describe_ok")
    );
    let rows = read_rows(out.path());
    assert_eq!(rows.len(), data.len());
    for s in &data {
        assert_same_session(&rows[&s.session_id], s);
    }

    // A staging failure: a folder where the first page of the newest
    // Active slice (job 0, which holds sessions) must be staged.
    let out = tempfile::tempdir().expect("tempdir");
    let blocked = out.path().join(format!(
        "_checkpoint/{ACCOUNT}_{REGION}/staged/active-00000-000000.parquet"
    ));
    std::fs::create_dir_all(blocked.join("in-the-way")).expect("mkdir");
    let failed = export(&sim, out.path(), CRAWL);
    assert_refused(&failed, 1, "active-00000-000000.parquet", "failed");
    let saved = checkpoint(out.path());
    assert_eq!(
        saved["jobs"][0]["pages_done"], 0,
        "the failed page is not recorded"
    );
    assert_ne!(saved["jobs"][0]["status"], "done");
    assert!(read_partitions(out.path()).is_empty());
    std::fs::remove_dir_all(&blocked).expect("clear the way");
    assert_success(&export(&sim, out.path(), CRAWL));
    assert_eq!(read_rows(out.path()).len(), data.len());
}

#[test]
fn a_resume_crawls_again_the_windows_whose_staged_parts_are_gone_or_altered() {
    let data = generated(800, 85, &["--active-share", "0"]);
    let (sim, _d) = Sim::with_sessions(&data, &["--latency", "20ms"]);
    let out = tempfile::tempdir().expect("tempdir");
    let parts = interrupted_after_vouching(&sim, out.path(), 2);
    assert!(parts.len() >= 2, "{parts:?}");
    // A lifecycle rule took one part; something rewrote another.
    std::fs::remove_file(&parts[0]).expect("remove");
    std::fs::write(&parts[parts.len() - 1], b"not a part").expect("alter");

    let resumed = export(&sim, out.path(), CRAWL);
    assert_success(&resumed);
    assert!(
        stderr(&resumed).contains("crawling that window again"),
        "{}",
        stderr(&resumed)
    );
    let rows = read_rows(out.path());
    assert_eq!(rows.len(), data.len());
    for s in &data {
        assert_same_session(&rows[&s.session_id], s);
    }
}

#[test]
fn a_resumed_window_that_ends_now_is_crawled_up_to_the_resume() {
    // A session that starts and ends after the first attempt's "now": the
    // resume, an hour later by its clock, must crawl up to its own now.
    let first_now = now_ms();
    let mut late = session("frank-0ffffffffffffffff", first_now + 10 * 60_000);
    late.end_date = Some(late.start_date + 60_000);
    let mut data = generated(800, 86, &["--active-share", "0"]);
    data.push(late.clone());
    let (sim, _d) = Sim::with_sessions(&data, &["--latency", "20ms"]);
    let out = tempfile::tempdir().expect("tempdir");
    let at = |ms: i64| {
        chrono::DateTime::from_timestamp_millis(ms)
            .expect("time")
            .to_rfc3339()
    };
    let mut child = export_command(&sim, out.path(), CRAWL)
        .env("SSM_AUDIT_CLOCK_START", at(first_now))
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starts");
    assert!(wait_until(Duration::from_secs(60), || sim
        .stat("describe_ok")
        >= 6));
    child.kill().expect("kill -9");
    child.wait().expect("reap");
    assert_eq!(checkpoint(out.path())["status"], "in_progress");

    let resumed = export_command(&sim, out.path(), CRAWL)
        .env("SSM_AUDIT_CLOCK_START", at(first_now + 3_600_000))
        .output()
        .expect("runs");
    assert_success(&resumed);
    let rows = read_rows(out.path());
    assert!(
        rows.contains_key(&late.session_id),
        "the newest session is exported"
    );
    assert_eq!(rows.len(), data.len());
}

#[test]
fn an_unreadable_partition_stops_nothing_else_and_is_published_by_the_next_run() {
    let data = generated(600, 87, &[]);
    let (sim, _d) = Sim::with_sessions(&data, &[]);
    let out = tempfile::tempdir().expect("tempdir");
    assert_success(&export(&sim, out.path(), &[]));
    let partitions = read_partitions(out.path());
    let (broken_key, broken_rows) = partitions
        .iter()
        .max_by_key(|(_, rows)| rows.len())
        .map(|(key, rows)| (key.clone(), rows.len()))
        .expect("a partition");
    let broken = out.path().join(&broken_key);
    // Another tool rewrote it into something this version cannot read.
    std::fs::write(&broken, b"not parquet").expect("overwrite");

    let partial = export(&sim, out.path(), &[]);
    assert_eq!(partial.status.code(), Some(7), "{}", stderr(&partial));
    let text = stderr(&partial);
    assert!(
        text.contains(&broken_key) && text.contains("next run"),
        "{text}"
    );
    assert_eq!(
        std::fs::read(&broken).expect("kept"),
        b"not parquet",
        "left as it was"
    );
    let others: usize = read_partitions_except(out.path(), &broken_key);
    assert_eq!(
        others,
        data.len() - broken_rows,
        "every other partition is published"
    );
    assert_eq!(checkpoint(out.path())["status"], "complete");
    let pending = out
        .path()
        .join(format!("_checkpoint/{ACCOUNT}_{REGION}/pending"));
    assert!(pending.exists(), "its sessions are kept");

    // Moved aside: the next run publishes the kept sessions with the rest.
    std::fs::remove_file(&broken).expect("move aside");
    assert_success(&export(&sim, out.path(), &[]));
    let rows = read_rows(out.path());
    assert_eq!(rows.len(), data.len());
    for s in &data {
        assert_same_session(&rows[&s.session_id], s);
    }
    let left: Vec<_> = walk(&pending);
    assert!(
        left.is_empty(),
        "pending parts are removed once published: {left:?}"
    );
}

/// Rows in every partition but `skip`, which may not be readable.
fn read_partitions_except(output: &Path, skip: &str) -> usize {
    walk(&output.join("sessions"))
        .into_iter()
        .filter(|path| !path.ends_with(skip))
        .map(|path| {
            let bytes = std::fs::read(&path).expect("read");
            ssm_audit::dataset::schema::read_parquet(bytes.into())
                .expect("a partition")
                .len()
        })
        .sum()
}

fn walk(dir: &Path) -> Vec<std::path::PathBuf> {
    let mut files = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return files;
    };
    for entry in entries {
        let path = entry.expect("entry").path();
        if path.is_dir() {
            files.extend(walk(&path));
        } else {
            files.push(path);
        }
    }
    files
}
