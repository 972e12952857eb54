//! Many accounts and regions in one run, against a simulator that serves
//! several accounts through assumed roles: each row from its own account and
//! region, empty pairs in two calls, failures isolated and retried alone,
//! shards that add up to the whole, and a plan for a large organization
//! computed without a call.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

use crate::common::*;
use crate::sim_model::SimSession;

const ROLE: &str = "ssm-audit";
const EXTERNAL_ID: &str = "ext-7";

fn account(i: usize) -> String {
    format!("{:012}", 100_000_000_000u64 + i as u64)
}

/// An accounts file for the simulator: `data` gives each (account, region)
/// with sessions; `extra` adds fields per account.
fn accounts_file(
    dir: &Path,
    accounts: &[String],
    data: &BTreeMap<(String, String), Vec<SimSession>>,
    extra: &BTreeMap<String, serde_json::Value>,
) -> PathBuf {
    let mut list = Vec::new();
    for account in accounts {
        let mut regions = serde_json::Map::new();
        for ((a, region), sessions) in data {
            if a == account {
                let path = write_jsonl(dir, sessions);
                regions.insert(region.clone(), serde_json::json!({ "data": path }));
            }
        }
        let mut entry = serde_json::json!({ "account_id": account, "regions": regions });
        if let Some(serde_json::Value::Object(fields)) = extra.get(account) {
            for (k, v) in fields {
                entry[k] = v.clone();
            }
        }
        list.push(entry);
    }
    let file = dir.join("accounts.json");
    let body =
        serde_json::json!({ "role_name": ROLE, "external_id": EXTERNAL_ID, "accounts": list });
    std::fs::write(&file, body.to_string()).expect("write accounts file");
    file
}

/// Sessions for one (account, region), their ids made unique to it.
fn pair_sessions(account: &str, region: &str, count: usize, seed: u64) -> Vec<SimSession> {
    let mut sessions = generated(count, seed, &[]);
    for s in &mut sessions {
        s.session_id = format!("{}-{region}-{}", &account[9..], s.session_id);
    }
    sessions
}

/// A simulator serving the accounts file, with `home` sessions of its own.
fn org_sim(file: &Path, home: usize) -> Sim {
    Sim::start(&[
        "--accounts-file",
        file.to_str().expect("utf-8"),
        "--sessions",
        &home.to_string(),
    ])
}

fn org_export(
    sim: &Sim,
    out: &Path,
    accounts: &str,
    regions: &str,
    extra: &[&str],
) -> std::process::Output {
    export_command(
        sim,
        out,
        &[
            &["--accounts", accounts, "--regions", regions],
            &["--role-name", ROLE, "--external-id", EXTERNAL_ID],
            extra,
        ]
        .concat(),
    )
    .output()
    .expect("runs")
}

/// Session ids per (account, region) in an output.
fn ids_by_pair(out: &Path) -> BTreeMap<(String, String), BTreeSet<String>> {
    let mut found: BTreeMap<(String, String), BTreeSet<String>> = BTreeMap::new();
    for (_, rows) in read_partitions(out) {
        for row in rows {
            found
                .entry((row.account_id.clone(), row.region.clone()))
                .or_default()
                .insert(row.session_id.clone());
        }
    }
    found
}

#[test]
fn three_accounts_in_two_regions_through_assumed_roles_each_row_from_its_own_pair() {
    let dir = tempfile::tempdir().expect("tempdir");
    let accounts: Vec<String> = (1..=3).map(account).collect();
    let regions = ["eu-west-1", "us-east-1"];
    let mut data = BTreeMap::new();
    let mut seed = 500;
    for a in &accounts {
        for r in regions {
            seed += 1;
            let sessions = pair_sessions(a, r, 60 + seed as usize % 40, seed);
            data.insert((a.clone(), r.to_owned()), sessions);
        }
    }
    let file = accounts_file(dir.path(), &accounts, &data, &BTreeMap::new());
    let sim = org_sim(&file, 7);
    let out = tempfile::tempdir().expect("tempdir");
    let heads = dir.path().join("heads.txt");
    let result = org_export(
        &sim,
        out.path(),
        &accounts.join(","),
        &regions.join(","),
        &["--chain-head-out", heads.to_str().expect("utf-8")],
    );
    assert_success(&result);
    assert!(
        stderr(&result).contains("6 (account, region) pairs completed"),
        "{}",
        stderr(&result)
    );
    let kept = std::fs::read_to_string(&heads).expect("heads kept");
    assert_eq!(kept.lines().count(), 6, "{kept}");

    let found = ids_by_pair(out.path());
    let expected: BTreeMap<(String, String), BTreeSet<String>> = data
        .iter()
        .map(|(pair, sessions)| {
            (
                pair.clone(),
                sessions.iter().map(|s| s.session_id.clone()).collect(),
            )
        })
        .collect();
    assert_eq!(
        found, expected,
        "every row in its own account and region, none missing"
    );
    // One AssumeRole per account, shared by its regions.
    assert_eq!(sim.stat("assume_role_calls"), 3);
    // Each pair has its own chain.
    let verify = ssm_audit()
        .args(["verify", "--output", out.path().to_str().expect("utf-8")])
        .args(["--expect-head", &kept])
        .output()
        .expect("runs");
    assert_success(&verify);
    assert_eq!(
        String::from_utf8_lossy(&verify.stdout)
            .matches("chain     ")
            .count(),
        6
    );

    // A wrong external id reaches no account, and says so for each.
    let denied = tempfile::tempdir().expect("tempdir");
    let result = export(
        &sim,
        denied.path(),
        &[
            "--accounts",
            &accounts[0],
            "--role-name",
            ROLE,
            "--external-id",
            "wrong",
        ],
    );
    assert_refused(&result, 1, "cannot assume", "a wrong external id");
}

#[test]
fn an_organization_of_two_hundred_mostly_empty_accounts_costs_two_calls_a_pair() {
    let dir = tempfile::tempdir().expect("tempdir");
    let accounts: Vec<String> = (1..=200).map(account).collect();
    let regions = ["eu-west-1", "us-east-1", "ap-south-1"];
    let mut data = BTreeMap::new();
    data.insert(
        (accounts[17].clone(), "us-east-1".to_owned()),
        generated(300, 77, &[]),
    );
    let file = accounts_file(dir.path(), &accounts, &data, &BTreeMap::new());
    let sim = org_sim(&file, 0);
    let out = tempfile::tempdir().expect("tempdir");
    let mut child = export_command(
        &sim,
        out.path(),
        &[
            "--organization",
            "--regions",
            &regions.join(","),
            "--role-name",
            ROLE,
            "--external-id",
            EXTERNAL_ID,
            "--concurrency",
            "16",
        ],
    )
    // To a file: a pipe nobody reads while it runs would fill and stall it.
    .stderr(std::fs::File::create(dir.path().join("stderr.log")).expect("log file"))
    .spawn()
    .expect("runs");
    // Peak memory, read from the running process (VmHWM only grows).
    let status_file = format!("/proc/{}/status", child.id());
    let mut peak_kib = 0u64;
    while child.try_wait().expect("wait").is_none() {
        if let Ok(text) = std::fs::read_to_string(&status_file) {
            if let Some(line) = text.lines().find(|l| l.starts_with("VmHWM:")) {
                let kib: u64 = line
                    .split_whitespace()
                    .nth(1)
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(0);
                peak_kib = peak_kib.max(kib);
            }
        }
        std::thread::sleep(std::time::Duration::from_millis(20));
    }
    let status = child.wait().expect("exit");
    let log = std::fs::read_to_string(dir.path().join("stderr.log")).expect("log");
    assert!(status.success(), "{status}: {log}");
    eprintln!(
        "200 accounts x 3 regions: peak RSS about {} MiB",
        peak_kib / 1024
    );

    let stats = sim.stats();
    let by_pair = stats["calls_by_pair"].as_object().expect("calls by pair");
    assert_eq!(by_pair.len(), 600);
    let busy = format!("{}/us-east-1", accounts[17]);
    for (pair, calls) in by_pair {
        if *pair != busy {
            assert_eq!(
                calls.as_u64(),
                Some(2),
                "{pair}: an empty pair costs one call per state"
            );
        }
    }
    assert_eq!(sim.stat("assume_role_calls"), 200);
    assert_eq!(read_rows(out.path()).len(), 300);
}

#[test]
fn a_bad_role_and_a_disabled_region_fail_alone_and_the_rerun_touches_only_them() {
    let dir = tempfile::tempdir().expect("tempdir");
    let accounts: Vec<String> = (1..=3).map(account).collect();
    let regions = ["eu-west-1", "us-east-1"];
    let mut data = BTreeMap::new();
    for (i, a) in accounts.iter().enumerate() {
        let sessions = pair_sessions(a, "eu-west-1", 40, 900 + i as u64);
        data.insert((a.clone(), "eu-west-1".to_owned()), sessions);
    }
    let mut extra = BTreeMap::new();
    extra.insert(
        accounts[0].clone(),
        serde_json::json!({ "role_name": "another-role" }),
    );
    extra.insert(
        accounts[1].clone(),
        serde_json::json!({ "disabled_regions": ["us-east-1"] }),
    );
    let file = accounts_file(dir.path(), &accounts, &data, &extra);
    let sim = org_sim(&file, 0);
    let out = tempfile::tempdir().expect("tempdir");
    let run = || {
        org_export(
            &sim,
            out.path(),
            &accounts.join(","),
            &regions.join(","),
            &["--max-attempts", "2"],
        )
    };

    let first = run();
    assert_eq!(first.status.code(), Some(7), "{}", stderr(&first));
    let message = stderr(&first);
    assert!(
        message.contains("3 (account, region) pairs completed, 3 failed"),
        "{message}"
    );
    assert!(
        message.contains(&format!("{}/eu-west-1", accounts[0])),
        "{message}"
    );
    assert!(
        message.contains(&format!("{}/us-east-1", accounts[1])),
        "{message}"
    );
    let status: serde_json::Value = serde_json::from_slice(
        &std::fs::read(out.path().join("_status/all.json")).expect("status file"),
    )
    .expect("json");
    let outcomes: BTreeMap<String, String> = status["pairs"]
        .as_array()
        .expect("pairs")
        .iter()
        .map(|p| {
            (
                format!(
                    "{}/{}",
                    p["account_id"].as_str().expect("id"),
                    p["region"].as_str().expect("region")
                ),
                p["outcome"].as_str().expect("outcome").to_owned(),
            )
        })
        .collect();
    assert_eq!(outcomes.len(), 6);
    assert_eq!(
        outcomes.values().filter(|o| *o == "completed").count(),
        3,
        "{outcomes:?}"
    );
    let found = ids_by_pair(out.path());
    assert_eq!(
        found.len(),
        2,
        "the two healthy pairs with data are exported"
    );

    let before = sim.stats()["calls_by_pair"].clone();
    let second = run();
    assert_eq!(second.status.code(), Some(7), "{}", stderr(&second));
    let after = sim.stats()["calls_by_pair"].clone();
    for (pair, outcome) in &outcomes {
        let (b, a) = (
            before[pair].as_u64().unwrap_or(0),
            after[pair].as_u64().unwrap_or(0),
        );
        if outcome == "completed" {
            assert_eq!(a, b, "{pair} completed: the rerun leaves it alone");
        }
    }
    let disabled = format!("{}/us-east-1", accounts[1]);
    assert!(
        after[&disabled].as_u64() > before[&disabled].as_u64(),
        "the failed pair is retried"
    );
}

#[test]
fn shards_run_apart_add_up_to_one_unsharded_run_with_no_pair_twice() {
    let dir = tempfile::tempdir().expect("tempdir");
    let accounts: Vec<String> = (1..=6).map(account).collect();
    let regions = ["eu-west-1", "us-east-1"];
    let mut data = BTreeMap::new();
    for (i, a) in accounts.iter().enumerate() {
        for r in regions {
            let sessions = pair_sessions(a, r, 20 + i * 3, 700 + i as u64);
            data.insert((a.clone(), r.to_owned()), sessions);
        }
    }
    let file = accounts_file(dir.path(), &accounts, &data, &BTreeMap::new());
    let sim = org_sim(&file, 0);
    let whole = tempfile::tempdir().expect("tempdir");
    assert_success(&org_export(
        &sim,
        whole.path(),
        &accounts.join(","),
        &regions.join(","),
        &[],
    ));
    let sharded = tempfile::tempdir().expect("tempdir");
    let mut seen = BTreeSet::new();
    for k in 1..=3 {
        let shard = format!("{k}/3");
        assert_success(&org_export(
            &sim,
            sharded.path(),
            &accounts.join(","),
            &regions.join(","),
            &["--shard", &shard],
        ));
        let status: serde_json::Value = serde_json::from_slice(
            &std::fs::read(sharded.path().join(format!("_status/shard-{k}-of-3.json")))
                .expect("status"),
        )
        .expect("json");
        for pair in status["pairs"].as_array().expect("pairs") {
            let name = format!("{}/{}", pair["account_id"], pair["region"]);
            assert!(seen.insert(name.clone()), "{name} in two shards");
        }
    }
    assert_eq!(seen.len(), 12, "every pair in a shard");
    assert_eq!(ids_by_pair(sharded.path()), ids_by_pair(whole.path()));
}

#[test]
fn the_plan_for_five_thousand_accounts_in_seventeen_regions_needs_no_call() {
    let dir = tempfile::tempdir().expect("tempdir");
    let list = dir.path().join("accounts.txt");
    let accounts: Vec<String> = (1..=5000).map(account).collect();
    std::fs::write(&list, accounts.join("\n")).expect("write");
    let regions = "us-east-1,us-east-2,us-west-1,us-west-2,ca-central-1,eu-west-1,eu-west-2,eu-west-3,eu-central-1,eu-north-1,ap-south-1,ap-northeast-1,ap-northeast-2,ap-northeast-3,ap-southeast-1,ap-southeast-2,sa-east-1";
    let out = tempfile::tempdir().expect("tempdir");
    // `shard` is `--shard`'s value, or AWS Batch's index and size.
    let plan = |shard: Option<&str>, batch: Option<(&str, &str)>| {
        let mut cmd = ssm_audit();
        cmd.args([
            "export",
            "--output",
            out.path().to_str().expect("utf-8"),
            "--dry-run",
        ])
        .args([
            "--accounts-file",
            list.to_str().expect("utf-8"),
            "--regions",
            regions,
        ])
        .args(["--role-name", ROLE])
        // Nothing listens here: any call would fail the command.
        .args(["--endpoint-url", "http://127.0.0.1:9"]);
        if let Some(shard) = shard {
            cmd.args(["--shard", shard]);
        }
        if let Some((index, size)) = batch {
            cmd.env("AWS_BATCH_JOB_ARRAY_INDEX", index)
                .env("AWS_BATCH_JOB_ARRAY_SIZE", size);
        }
        let result = cmd.output().expect("runs");
        assert_success(&result);
        String::from_utf8_lossy(&result.stdout).into_owned()
    };
    let whole = plan(None, None);
    assert!(
        whole.contains("plan: 85000 pairs (5000 accounts x 17 regions), 2 windows each to start; at least 170000 DescribeSessions calls"),
        "{}",
        whole.lines().last().unwrap_or("")
    );
    assert!(
        whole.contains("10000 STS calls"),
        "{}",
        whole.lines().last().unwrap_or("")
    );
    let shard = plan(Some("3/8"), None);
    let pairs = shard.lines().filter(|l| l.starts_with("pair ")).count();
    assert!(
        (10_000..11_300).contains(&pairs),
        "shard 3/8 has {pairs} pairs"
    );
    // An AWS Batch array job's index (0-based) and size name the same shard.
    assert_eq!(plan(None, Some(("2", "8"))), shard);
    assert!(
        !out.path().join("_runs").exists(),
        "a dry run writes nothing"
    );
}

#[test]
fn a_dry_run_of_the_callers_own_account_crawls_nothing() {
    let sim = Sim::start(&["--sessions", "50"]);
    let out = tempfile::tempdir().expect("tempdir");
    let planned = export(&sim, out.path(), &["--dry-run"]);
    assert_success(&planned);
    let plan = String::from_utf8_lossy(&planned.stdout).into_owned();
    assert!(plan.contains(&format!("pair {ACCOUNT}/{REGION}")), "{plan}");
    assert_eq!(sim.stat("describe_calls"), 0);
    assert!(!out.path().join("_runs").exists());
}

#[test]
fn an_organization_by_ou_with_each_accounts_enabled_regions_skips_suspended_members() {
    let dir = tempfile::tempdir().expect("tempdir");
    let accounts: Vec<String> = (1..=5).map(account).collect();
    let mut data = BTreeMap::new();
    let mut add = |a: &str, region: &str, seed: u64| {
        let sessions = pair_sessions(a, region, 30, seed);
        data.insert((a.to_owned(), region.to_owned()), sessions);
    };
    add(&accounts[0], "eu-west-1", 41);
    add(&accounts[1], "us-east-1", 42);
    add(&accounts[2], "eu-west-1", 43);
    add(&accounts[3], "eu-west-1", 44);
    add(&accounts[4], "eu-west-1", 45);
    let mut extra = BTreeMap::new();
    extra.insert(
        accounts[0].clone(),
        serde_json::json!({ "parent": "ou-prod", "enabled_regions": ["us-east-1"] }),
    );
    extra.insert(
        accounts[1].clone(),
        serde_json::json!({ "parent": "ou-prodchild" }),
    );
    extra.insert(
        accounts[2].clone(),
        serde_json::json!({ "parent": "ou-sandbox" }),
    );
    extra.insert(
        accounts[3].clone(),
        serde_json::json!({ "parent": "ou-prod", "status": "SUSPENDED" }),
    );
    let file = accounts_file(dir.path(), &accounts, &data, &extra);
    let mut spec: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&file).expect("read")).expect("json");
    spec["ous"] = serde_json::json!([
        { "id": "ou-prod", "parent": "r-root" },
        { "id": "ou-prodchild", "parent": "ou-prod" },
        { "id": "ou-sandbox", "parent": "r-root" },
    ]);
    std::fs::write(&file, spec.to_string()).expect("write");
    let sim = org_sim(&file, 0);

    let out = tempfile::tempdir().expect("tempdir");
    let result = export(
        &sim,
        out.path(),
        &[
            "--organization",
            "--include-ou",
            "ou-prod",
            "--regions",
            "all-enabled",
            "--role-name",
            ROLE,
            "--external-id",
            EXTERNAL_ID,
        ],
    );
    assert_success(&result);
    let found = ids_by_pair(out.path());
    let expected: BTreeMap<(String, String), BTreeSet<String>> = data
        .iter()
        .filter(|((a, _), _)| *a == accounts[0] || *a == accounts[1])
        .map(|(pair, sessions)| {
            (
                pair.clone(),
                sessions.iter().map(|s| s.session_id.clone()).collect(),
            )
        })
        .collect();
    assert_eq!(
        found, expected,
        "the OU and its child, each account's enabled regions"
    );
    let calls = sim.stats()["calls_by_pair"].clone();
    let crawled: BTreeSet<&String> = calls.as_object().expect("pairs").keys().collect();
    let wanted = [
        format!("{}/eu-west-1", accounts[0]),
        format!("{}/us-east-1", accounts[0]),
        format!("{}/us-east-1", accounts[1]),
    ];
    assert_eq!(crawled, wanted.iter().collect::<BTreeSet<_>>());
    let status = std::fs::read_to_string(out.path().join("_status/all.json")).expect("status");
    assert!(
        status.contains(&accounts[3]) && status.contains("SUSPENDED"),
        "{status}"
    );

    // Excluding an OU instead, planned without crawling anything.
    let planned = export(
        &sim,
        out.path(),
        &[
            "--organization",
            "--exclude-ou",
            "ou-sandbox",
            "--regions",
            "eu-west-1",
            "--role-name",
            ROLE,
            "--dry-run",
        ],
    );
    assert_success(&planned);
    let plan = String::from_utf8_lossy(&planned.stdout).into_owned();
    let pairs: Vec<&str> = plan.lines().filter(|l| l.starts_with("pair ")).collect();
    assert_eq!(
        pairs,
        vec![
            format!("pair {}/eu-west-1", accounts[0]).as_str(),
            format!("pair {}/eu-west-1", accounts[1]).as_str(),
            format!("pair {}/eu-west-1", accounts[4]).as_str(),
        ]
    );
}

#[test]
fn each_account_and_region_has_a_rate_limit_of_its_own() {
    let dir = tempfile::tempdir().expect("tempdir");
    let accounts: Vec<String> = (1..=4).map(account).collect();
    let regions = ["eu-west-1", "us-east-1"];
    let mut data = BTreeMap::new();
    for (i, a) in accounts.iter().enumerate() {
        for r in regions {
            data.insert(
                (a.clone(), r.to_owned()),
                pair_sessions(a, r, 50, 300 + i as u64),
            );
        }
    }
    let file = accounts_file(dir.path(), &accounts, &data, &BTreeMap::new());
    // Two calls a second per pair: every pair fits its own budget (one call
    // per state), where one budget for the whole simulator would throttle.
    let sim = Sim::start(&[
        "--accounts-file",
        file.to_str().expect("utf-8"),
        "--sessions",
        "0",
        "--rate-limit",
        "0.01",
        "--burst",
        "2",
    ]);
    let out = tempfile::tempdir().expect("tempdir");
    assert_success(&org_export(
        &sim,
        out.path(),
        &accounts.join(","),
        &regions.join(","),
        // A throttle would soon fail the run rather than be outwaited.
        &["--concurrency", "16", "--max-attempts", "1"],
    ));
    assert_eq!(sim.stat("describe_calls"), 16);
    assert_eq!(sim.stat("throttled"), 0);
}

#[test]
fn the_callers_own_enabled_regions_are_listed_with_its_own_credentials() {
    let dir = tempfile::tempdir().expect("tempdir");
    // The simulator's own account, its regions listed by account:ListRegions.
    let file = dir.path().join("accounts.json");
    let spec = serde_json::json!({
        "role_name": ROLE,
        "accounts": [{ "account_id": ACCOUNT, "enabled_regions": ["eu-west-1", "us-east-1"] }],
    });
    std::fs::write(&file, spec.to_string()).expect("write");
    let sim = org_sim(&file, 20);
    let out = tempfile::tempdir().expect("tempdir");
    let result = export(&sim, out.path(), &["--regions", "all-enabled"]);
    assert_success(&result);
    let found = ids_by_pair(out.path());
    let pairs: Vec<(String, String)> = found.keys().cloned().collect();
    assert_eq!(
        pairs,
        [
            (ACCOUNT.to_owned(), "eu-west-1".to_owned()),
            (ACCOUNT.to_owned(), "us-east-1".to_owned())
        ]
    );
    assert!(found.values().all(|ids| ids.len() == 20), "{found:?}");
    assert_eq!(
        sim.stat("assume_role_calls"),
        0,
        "no role: its own credentials"
    );
}

/// The EMF documents an export printed on stdout.
fn emf_documents(output: &std::process::Output) -> Vec<serde_json::Value> {
    String::from_utf8_lossy(&output.stdout)
        .lines()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .filter(|d| d.get("_aws").is_some())
        .collect()
}

#[test]
fn a_pair_that_fails_tonight_reports_how_old_its_coverage_is() {
    let dir = tempfile::tempdir().expect("tempdir");
    let accounts: Vec<String> = (1..=2).map(account).collect();
    let mut data = BTreeMap::new();
    for (i, a) in accounts.iter().enumerate() {
        data.insert(
            (a.clone(), "eu-west-1".to_owned()),
            pair_sessions(a, "eu-west-1", 10, 60 + i as u64),
        );
    }
    let listed = accounts.join(",");
    let out = tempfile::tempdir().expect("tempdir");
    let first_night = org_sim(
        &accounts_file(dir.path(), &accounts, &data, &BTreeMap::new()),
        0,
    );
    assert_success(&org_export(
        &first_night,
        out.path(),
        &listed,
        "eu-west-1",
        &[],
    ));
    drop(first_night);

    // The next night the second account's role is gone.
    let mut broken = BTreeMap::new();
    broken.insert(
        accounts[1].clone(),
        serde_json::json!({ "role_name": "another-role" }),
    );
    let next = tempfile::tempdir().expect("tempdir");
    let second_night = org_sim(&accounts_file(next.path(), &accounts, &data, &broken), 0);
    let result = org_export(&second_night, out.path(), &listed, "eu-west-1", &[]);
    assert_eq!(result.status.code(), Some(7), "{}", stderr(&result));
    let documents = emf_documents(&result);
    let of = |account: &str| {
        documents
            .iter()
            .find(|d| d["AccountId"] == account)
            .unwrap_or_else(|| panic!("a line for {account}: {documents:?}"))
    };
    let failed = of(&accounts[1]);
    assert_eq!(failed["PairFailed"], 1.0);
    let behind = failed["CoverageAgeSeconds"]
        .as_f64()
        .expect("its last night's coverage");
    assert!(
        (0.0..600.0).contains(&behind),
        "covered by the first night: {behind}"
    );
    let fresh = of(&accounts[0])["CoverageAgeSeconds"]
        .as_f64()
        .expect("age");
    assert!(
        fresh <= behind,
        "tonight's coverage is newer: {fresh} vs {behind}"
    );
    let run = documents
        .iter()
        .find(|d| d.get("AccountId").is_none())
        .expect("the run's line");
    assert_eq!(run["MaxCoverageAgeSeconds"], failed["CoverageAgeSeconds"]);
    assert_eq!(run["FailedPairs"], 1.0);
}
