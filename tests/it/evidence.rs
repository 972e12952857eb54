//! Evidence on real exports: chained manifests and what `verify` finds when
//! someone with write access edits them, signatures (Ed25519 here; KMS in
//! `s3.rs` beside moto), the head kept apart from the output, and coverage.

use std::path::{Path, PathBuf};

use crate::common::*;

fn run(args: &[&str]) -> std::process::Output {
    ssm_audit().args(args).output().expect("ssm-audit runs")
}

fn path_str(path: &Path) -> &str {
    path.to_str().expect("utf-8 path")
}

fn verify(out: &Path, extra: &[&str]) -> std::process::Output {
    let mut args = vec!["verify", "--output", path_str(out)];
    args.extend_from_slice(extra);
    run(&args)
}

fn stdout(output: &std::process::Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

/// A copy of a data set, so each tampering starts from the same one.
fn copy_tree(from: &Path, to: &Path) {
    std::fs::create_dir_all(to).expect("mkdir");
    for entry in std::fs::read_dir(from).expect("read") {
        let entry = entry.expect("entry");
        let target = to.join(entry.file_name());
        if entry.file_type().expect("type").is_dir() {
            copy_tree(&entry.path(), &target);
        } else {
            std::fs::copy(entry.path(), &target).expect("copy");
        }
    }
}

fn edit_json(path: &Path, edit: impl FnOnce(&mut serde_json::Value)) {
    let mut value: serde_json::Value =
        serde_json::from_slice(&std::fs::read(path).expect("read")).expect("json");
    edit(&mut value);
    std::fs::write(path, serde_json::to_vec_pretty(&value).expect("json")).expect("write");
}

fn head_file(out: &Path) -> PathBuf {
    out.join(format!("_chain/{ACCOUNT}_{REGION}.json"))
}

fn assert_finding(output: &std::process::Output, line_start: &str, what: &str) {
    assert_eq!(output.status.code(), Some(6), "{what}: {}", stderr(output));
    let text = stdout(output);
    assert!(
        text.lines().any(|l| l.starts_with(line_start)),
        "{what}: no line starting {line_start:?} in\n{text}"
    );
}

#[test]
fn a_chain_of_runs_verifies_and_each_kind_of_tampering_is_named() {
    let data = generated(400, 71, &[]);
    let (sim, _data_dir) = Sim::with_sessions(&data, &[]);
    let out = tempfile::tempdir().expect("tempdir");
    let kept = tempfile::tempdir().expect("tempdir");
    let head_out = kept.path().join("head.txt");
    let head_flag = ["--chain-head-out", path_str(&head_out)];
    assert_success(&export(&sim, out.path(), &head_flag));
    let first_head = std::fs::read_to_string(&head_out).expect("head kept");
    assert!(
        first_head.starts_with(&format!("{ACCOUNT}/{REGION}=1:")),
        "{first_head}"
    );
    let second = export(&sim, out.path(), &head_flag);
    assert_success(&second);
    let head = std::fs::read_to_string(&head_out).expect("head kept");
    let head = head.trim();
    assert!(
        head.starts_with(&format!("{ACCOUNT}/{REGION}=2:")),
        "{head}"
    );
    assert!(
        stderr(&second).contains(&format!("chain head {head}")),
        "{}",
        stderr(&second)
    );

    let clean = verify(out.path(), &["--expect-head", head]);
    assert_success(&clean);
    assert!(stdout(&clean).contains("2 manifests"), "{}", stdout(&clean));
    // The bare form names the only chain.
    let bare = head.split_once('=').expect("anchor").1;
    assert_success(&verify(out.path(), &["--expect-head", bare]));
    let json = verify(out.path(), &["--format", "json"]);
    assert_success(&json);
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(report["chains"][0]["length"], 2);
    assert!(!report["checked"].as_array().expect("files").is_empty());

    let manifests = manifest_files(out.path());
    assert_eq!(manifests.len(), 2);
    let name = |p: &Path| {
        p.strip_prefix(out.path())
            .expect("inside")
            .to_string_lossy()
            .into_owned()
    };
    let (first, newest) = (name(&manifests[0]), name(&manifests[1]));
    let scenario = |edit: &dyn Fn(&Path)| {
        let copy = tempfile::tempdir().expect("tempdir");
        copy_tree(out.path(), copy.path());
        edit(copy.path());
        copy
    };

    // The newest manifest removed and the head file moved back: the head
    // kept apart shows it (whatever else the files show).
    let cut = scenario(&|d| {
        std::fs::remove_file(d.join(&newest)).expect("rm");
        std::fs::write(
            head_file(d),
            std::fs::read(head_file(out.path())).expect("read"),
        )
        .expect("write");
        edit_json(&head_file(d), |h| {
            h["sequence"] = 1.into();
            h["sha256"] = first_head.trim().rsplit_once(':').expect("digest").1.into();
            h["manifest"] = first.clone().into();
        });
    });
    let found = verify(cut.path(), &["--expect-head", head]);
    assert_finding(&found, "EXPECTED-HEAD", "a cut-off chain");
    assert!(
        stdout(&found).contains("the chain ends at sequence 1"),
        "{}",
        stdout(&found)
    );

    let gap = scenario(&|d| std::fs::remove_file(d.join(&first)).expect("rm"));
    assert_finding(&verify(gap.path(), &[]), "GAP", "a removed manifest");

    let altered = scenario(&|d| {
        edit_json(&d.join(&first), |m| m["files"][0]["rows"] = 0.into());
    });
    let found = verify(altered.path(), &[]);
    assert_finding(
        &found,
        &format!("BROKEN    {newest}"),
        "an altered manifest",
    );
    assert!(stdout(&found).contains(&first), "{}", stdout(&found));

    let forked = scenario(&|d| {
        let forged = d
            .join(&newest)
            .with_file_name("20261102T120000Z-0000beef.json");
        std::fs::copy(d.join(&newest), &forged).expect("copy");
        edit_json(&forged, |m| {
            m["run_id"] = "20261102T120000Z-0000beef".into()
        });
    });
    assert_finding(&verify(forked.path(), &[]), "FORK", "a forged second head");

    let reordered = scenario(&|d| {
        edit_json(&d.join(&first), |m| m["chain"]["sequence"] = 2.into());
        edit_json(&d.join(&newest), |m| m["chain"]["sequence"] = 1.into());
    });
    assert_finding(
        &verify(reordered.path(), &[]),
        "BROKEN",
        "swapped sequences",
    );

    let headless = scenario(&|d| std::fs::remove_file(head_file(d)).expect("rm"));
    assert_finding(&verify(headless.path(), &[]), "HEAD", "a removed head file");

    let unchained = scenario(&|d| {
        let stray = d.join("_runs/20261101T000000Z-00000001.json");
        std::fs::copy(d.join(&first), &stray).expect("copy");
        edit_json(&stray, |m| {
            m["manifest_version"] = 1.into();
            m["run_id"] = "20261101T000000Z-00000001".into();
            m.as_object_mut().expect("object").remove("chain");
        });
    });
    assert_finding(
        &verify(unchained.path(), &[]),
        "UNCHAINED",
        "a manifest added outside the chain",
    );

    // A later export continues the chain past a crash that left the head
    // file one manifest behind.
    let behind = scenario(&|d| {
        edit_json(&head_file(d), |h| {
            h["sequence"] = 1.into();
            h["sha256"] = first_head.trim().rsplit_once(':').expect("digest").1.into();
            h["manifest"] = first.clone().into();
        });
    });
    let next = export(&sim, behind.path(), &[]);
    assert_success(&next);
    assert!(
        stderr(&next).contains(&format!("{ACCOUNT}/{REGION}=3:")),
        "{}",
        stderr(&next)
    );
    assert_success(&verify(behind.path(), &["--expect-head", head]));
}

#[test]
fn signed_runs_verify_with_the_public_key_alone_and_a_bad_signature_is_named() {
    let data = generated(200, 72, &[]);
    let (sim, _data_dir) = Sim::with_sessions(&data, &[]);
    let out = tempfile::tempdir().expect("tempdir");
    let keys = tempfile::tempdir().expect("tempdir");
    let (private, public) = ssm_audit::evidence::sign::generate_ed25519_pem();
    let (_, other_public) = ssm_audit::evidence::sign::generate_ed25519_pem();
    let key = keys.path().join("sign.pem");
    std::fs::write(&key, private).expect("write");
    std::fs::write(keys.path().join("sign.pub.pem"), public).expect("write");
    std::fs::write(keys.path().join("other.pub.pem"), other_public).expect("write");
    let public = keys.path().join("sign.pub.pem");
    let other = keys.path().join("other.pub.pem");

    let refused = export(
        &sim,
        out.path(),
        &["--sign-key-file", path_str(&keys.path().join("absent.pem"))],
    );
    assert_refused(&refused, 2, "absent.pem", "a missing key file");
    for _ in 0..2 {
        assert_success(&export(
            &sim,
            out.path(),
            &["--sign-key-file", path_str(&key)],
        ));
    }
    let clean = verify(out.path(), &["--public-key", path_str(&public)]);
    assert_success(&clean);
    assert!(stdout(&clean).contains("2 signed"), "{}", stdout(&clean));
    // Unchecked without a key, and said so.
    let unchecked = verify(out.path(), &[]);
    assert_success(&unchecked);
    assert!(
        stdout(&unchecked).contains("signatures not checked"),
        "{}",
        stdout(&unchecked)
    );
    assert_finding(
        &verify(out.path(), &["--public-key", path_str(&other)]),
        "BAD-SIGNATURE",
        "another key",
    );

    let manifests = manifest_files(out.path());
    let signature = manifests[0].with_extension("sig");
    edit_json(&signature, |s| {
        let text = s["signature"].as_str().expect("b64").to_owned();
        let flipped = if text.starts_with('A') { "B" } else { "A" };
        s["signature"] = format!("{flipped}{}", &text[1..]).into();
    });
    assert_finding(
        &verify(out.path(), &["--public-key", path_str(&public)]),
        "BAD-SIGNATURE",
        "a tampered signature",
    );
    std::fs::remove_file(&signature).expect("rm");
    assert_finding(
        &verify(out.path(), &["--public-key", path_str(&public)]),
        "UNSIGNED",
        "a removed signature",
    );
}

#[test]
fn coverage_lists_every_gap_and_a_stale_chain_and_fails_for_either() {
    let day = |d: u32| format!("2026-10-{d:02}T00:00:00Z");
    let data = generated(300, 73, &[]);
    let (sim, _data_dir) = Sim::with_sessions(&data, &[]);
    let out = tempfile::tempdir().expect("tempdir");
    for (since, until) in [(10, 14), (13, 17), (20, 25)] {
        assert_success(&export(
            &sim,
            out.path(),
            &["--since", &day(since), "--until", &day(until)],
        ));
    }
    let coverage = |extra: &[&str]| {
        let mut args = vec!["coverage", "--output", path_str(out.path())];
        args.extend_from_slice(extra);
        run(&args)
    };
    let found = coverage(&[]);
    assert_eq!(found.status.code(), Some(8), "{}", stderr(&found));
    let text = stdout(&found);
    assert!(
        text.contains("GAP       from 2026-10-17T00:00:00Z to 2026-10-20T00:00:00Z (3d 0h)"),
        "{text}"
    );
    assert!(
        text.contains("covered   from 2026-10-10T00:00:00Z to 2026-10-17T00:00:00Z"),
        "{text}"
    );

    // A period inside what was crawled, checked on the night of the runs.
    assert_success(&coverage(&["--from", "2026-10-11", "--to", "2026-10-16"]));
    let json = coverage(&[
        "--from",
        "2026-10-11",
        "--to",
        "2026-10-21",
        "--format",
        "json",
    ]);
    assert_eq!(json.status.code(), Some(8));
    let report: serde_json::Value = serde_json::from_slice(&json.stdout).expect("json");
    assert_eq!(
        report["pairs"][0]["gaps"][0]["start"],
        "2026-10-17T00:00:00Z"
    );
    assert_eq!(report["pairs"][0]["gaps"][0]["end"], "2026-10-20T00:00:00Z");

    // An open end stops at the newest run's window: the hours since are
    // for --max-age to judge, not a gap.
    let contiguous = tempfile::tempdir().expect("tempdir");
    for (since, until) in [(10, 14), (13, 17)] {
        assert_success(&export(
            &sim,
            contiguous.path(),
            &["--since", &day(since), "--until", &day(until)],
        ));
    }
    assert_success(&run(&[
        "coverage",
        "--output",
        path_str(contiguous.path()),
        "--from",
        "2026-10-11",
    ]));

    // Three days later, without a run since: stale.
    let later = chrono::DateTime::from_timestamp_millis(now_ms() + 3 * 86_400_000)
        .expect("a time")
        .to_rfc3339();
    let stale = ssm_audit()
        .args([
            "coverage",
            "--output",
            path_str(out.path()),
            "--from",
            "2026-10-11",
            "--to",
            "2026-10-16",
        ])
        .env("SSM_AUDIT_CLOCK_START", later)
        .output()
        .expect("runs");
    assert_eq!(stale.status.code(), Some(8), "{}", stderr(&stale));
    assert!(stdout(&stale).contains("STALE"), "{}", stdout(&stale));

    // A filtered run lists only some sessions: it covers nothing.
    let filtered = tempfile::tempdir().expect("tempdir");
    assert_success(&export(
        &sim,
        filtered.path(),
        &["--filters", "key=Status,value=Terminated"],
    ));
    let none = run(&["coverage", "--output", path_str(filtered.path())]);
    assert_eq!(none.status.code(), Some(8), "{}", stdout(&none));
    assert!(
        stdout(&none).contains("no completed run covers any time"),
        "{}",
        stdout(&none)
    );
}
