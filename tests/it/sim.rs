//! The simulator's own command line: bad input is named, never a crash.

use std::process::Command;

use crate::sim_model::SimSession;

fn ssm_sim(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_ssm-sim"))
        .args(args)
        .output()
        .expect("ssm-sim runs")
}

#[test]
fn a_missing_or_malformed_data_file_is_named_with_its_line() {
    let dir = tempfile::tempdir().expect("tempdir");
    let missing = dir.path().join("missing.jsonl");
    let result = ssm_sim(&["serve", "--data", missing.to_str().expect("utf-8")]);
    assert_eq!(result.status.code(), Some(2));
    let text = String::from_utf8_lossy(&result.stderr);
    assert!(text.contains("missing.jsonl"), "{text}");

    let bad = dir.path().join("bad.jsonl");
    std::fs::write(
        &bad,
        "{\"SessionId\":\"a\",\"StartDate\":1}\n{\"SessionId\":\"b\",\"StartDate\":\"soon\"}\n",
    )
    .expect("write");
    let result = ssm_sim(&["serve", "--data", bad.to_str().expect("utf-8")]);
    assert_eq!(result.status.code(), Some(2));
    let text = String::from_utf8_lossy(&result.stderr);
    assert!(
        text.contains("bad.jsonl:2") && text.contains("RFC 3339"),
        "{text}"
    );
}

#[test]
fn out_of_range_knobs_are_refused() {
    // Each value gets past clap's parsing, so the simulator's own checks
    // must refuse it, with a message that names the knob.
    for (args, expected) in [
        (
            &["serve", "--error-share", "1.5"][..],
            "--error-share 1.5 must be a share between 0 and 1",
        ),
        (
            &["serve", "--rate-limit", "0"],
            "--rate-limit must be above 0",
        ),
        (
            &["serve", "--clock-offset", "yesterday"],
            "--clock-offset \"yesterday\"",
        ),
        (
            &["generate", "--skew-share=-0.1"],
            "--skew-share -0.1 must be a share between 0 and 1",
        ),
        (
            &["generate", "--active-share", "2"],
            "--active-share 2 must be a share between 0 and 1",
        ),
        (
            &["serve", "--clock-start", "noon"],
            "--clock-start \"noon\"",
        ),
    ] {
        let result = ssm_sim(args);
        let text = String::from_utf8_lossy(&result.stderr);
        assert_eq!(result.status.code(), Some(2), "{args:?}: {text}");
        assert!(
            text.contains(expected),
            "{args:?}: expected {expected:?} in {text}"
        );
    }
}

/// `ssm-sim generate` of a fixed data set into `out`, checked to succeed.
fn generate_into(out: &std::path::Path) {
    let result = ssm_sim(&[
        "generate",
        "--sessions",
        "250",
        "--seed",
        "3",
        "--now",
        "2026-11-01T00:00:00Z",
        "--out",
        out.to_str().expect("utf-8"),
    ]);
    assert!(
        result.status.success(),
        "{}",
        String::from_utf8_lossy(&result.stderr)
    );
}

#[test]
fn generate_writes_the_data_set_it_would_serve() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (out, again) = (
        dir.path().join("data.jsonl"),
        dir.path().join("again.jsonl"),
    );
    generate_into(&out);
    let sessions: Vec<SimSession> = std::fs::read_to_string(&out)
        .expect("read")
        .lines()
        .map(|line| serde_json::from_str(line).expect("a session in the wire shape"))
        .collect();
    assert_eq!(sessions.len(), 250);
    generate_into(&again);
    assert_eq!(
        std::fs::read(&out).expect("read"),
        std::fs::read(&again).expect("read"),
        "same seed, same data"
    );
}
