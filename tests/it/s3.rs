//! S3 outputs against moto_server: the export's guarantees with the output,
//! checkpoint and lock in a bucket. (The storage conformance suite for both
//! backends is in `storage.rs`.)

use std::time::Duration;

use crate::common::*;
use base64::Engine as _;

fn s3_export(sim: &Sim, moto: &Moto, output: &str, extra: &[&str]) -> std::process::Output {
    ssm_audit_with_s3(sim, moto)
        .args(["export", "--output", output])
        .args(extra)
        .output()
        .expect("ssm-audit runs")
}

#[test]
fn an_export_to_s3_equals_a_local_export_and_every_object_carries_checksum_and_encryption() {
    let data = generated(1200, 91, &["--bursts", "2", "--burst-size", "80"]);
    let (sim, _d) = Sim::with_sessions(&data, &[]);
    let moto = Moto::start();
    moto.create_bucket("audit-bucket");
    let sse = ["--sse", "aws:kms", "--sse-kms-key-id", "alias/ssm-audit"];
    assert_success(&s3_export(&sim, &moto, "s3://audit-bucket/ssm/prod", &sse));
    let local = tempfile::tempdir().expect("tempdir");
    assert_success(&export(&sim, local.path(), &[]));

    let strip =
        |rows: std::collections::BTreeMap<String, ssm_audit::dataset::record::SessionRecord>| {
            rows.into_values()
                .map(|mut r| {
                    r.first_seen_at = 0;
                    r.last_seen_at = 0;
                    r
                })
                .collect::<Vec<_>>()
        };
    let from_s3 = read_s3_rows(&moto, "audit-bucket", "ssm/prod");
    assert_eq!(from_s3.len(), data.len());
    // An auditor reads the encrypted data set back (kms:Decrypt through S3).
    let verified = ssm_audit_with_s3(&sim, &moto)
        .args(["verify", "--output", "s3://audit-bucket/ssm/prod"])
        .output()
        .expect("verify runs");
    assert_success(&verified);
    assert_eq!(strip(from_s3), strip(read_rows(local.path())));

    runtime().block_on(async {
        let client = moto.client();
        let listed = client
            .list_objects_v2()
            .bucket("audit-bucket")
            .prefix("ssm/prod/_runs/")
            .send()
            .await
            .expect("list");
        let manifest_key = listed.contents()[0].key().expect("key").to_owned();
        let manifest = client
            .get_object()
            .bucket("audit-bucket")
            .key(&manifest_key)
            .send()
            .await
            .expect("get");
        let manifest: serde_json::Value =
            serde_json::from_slice(&manifest.body.collect().await.expect("body").into_bytes())
                .expect("JSON");
        let files = manifest["files"].as_array().expect("files");
        assert!(!files.is_empty());
        for file in files {
            let key = format!("ssm/prod/{}", file["path"].as_str().expect("path"));
            let object = client
                .get_object()
                .bucket("audit-bucket")
                .key(&key)
                .checksum_mode(aws_sdk_s3::types::ChecksumMode::Enabled)
                .send()
                .await
                .expect("get");
            let checksum = object
                .checksum_sha256()
                .expect("a SHA-256 checksum")
                .to_owned();
            let hex = hex::encode(
                base64::engine::general_purpose::STANDARD
                    .decode(checksum)
                    .expect("base64"),
            );
            assert_eq!(Some(hex.as_str()), file["sha256"].as_str(), "{key}");
        }
        // Everything left in the bucket was uploaded encrypted with the key.
        let all = client
            .list_objects_v2()
            .bucket("audit-bucket")
            .send()
            .await
            .expect("list");
        assert!(all.contents().len() > files.len());
        for object in all.contents() {
            let key = object.key().expect("key");
            let head = client
                .head_object()
                .bucket("audit-bucket")
                .key(key)
                .send()
                .await
                .expect("head");
            assert_eq!(
                head.server_side_encryption().map(|s| s.as_str()),
                Some("aws:kms"),
                "{key}"
            );
            assert_eq!(head.ssekms_key_id(), Some("alias/ssm-audit"), "{key}");
        }
    });
}

#[test]
fn kill_9_and_resume_with_the_checkpoint_in_s3() {
    let data = generated(1500, 92, &[]);
    let (sim, _d) = Sim::with_sessions(&data, &["--latency", "5ms"]);
    let moto = Moto::start();
    moto.create_bucket("audit-bucket");
    let flags = ["--page-size", "40", "--slice", "12h", "--concurrency", "3"];
    for round in 0..2 {
        let mut child = ssm_audit_with_s3(&sim, &moto)
            .args(["export", "--output", "s3://audit-bucket/ssm"])
            .args(flags)
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("starts");
        let target = sim.stat("describe_ok") + 15;
        let deadline = std::time::Instant::now() + Duration::from_secs(60);
        while sim.stat("describe_ok") < target && child.try_wait().expect("wait").is_none() {
            assert!(
                std::time::Instant::now() < deadline,
                "round {round} stalled"
            );
            std::thread::sleep(Duration::from_millis(2));
        }
        child.kill().expect("kill -9");
        child.wait().expect("reap");
    }
    let result = s3_export(&sim, &moto, "s3://audit-bucket/ssm", &flags);
    assert_success(&result);
    assert!(stderr(&result).contains("resumed"), "{}", stderr(&result));
    let rows = read_s3_rows(&moto, "audit-bucket", "ssm");
    assert_eq!(rows.len(), data.len());
    for s in &data {
        assert_same_session(&rows[&s.session_id], s);
    }
}

#[test]
fn two_runs_at_once_on_one_prefix_exactly_one_proceeds() {
    let data = generated(400, 93, &[]);
    let (sim, _d) = Sim::with_sessions(&data, &["--latency", "300ms"]);
    let moto = Moto::start();
    moto.create_bucket("audit-bucket");
    // A lease short enough that the holder renews while the other watches
    // (the crawl takes about 3 s), and long enough that moto answers each
    // renewal within its sixth on a loaded machine: at 600 ms, a renewal
    // that took over 100 ms under two busy cores lost the lease, and the
    // holder rightly refused to publish.
    let spawn = || {
        ssm_audit_with_s3(&sim, &moto)
            .args([
                "export",
                "--output",
                "s3://audit-bucket/shared",
                "--page-size",
                "40",
                "--concurrency",
                "1",
                "--lock-lease",
                "3s",
            ])
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("starts")
    };
    let (first, second) = (spawn(), spawn());
    let outcomes = [
        first.wait_with_output().expect("first"),
        second.wait_with_output().expect("second"),
    ];
    let codes: Vec<_> = outcomes.iter().map(|o| o.status.code()).collect();
    assert!(
        codes.contains(&Some(0)) && codes.contains(&Some(5)),
        "{codes:?}: {}",
        outcomes.iter().map(stderr).collect::<String>()
    );
    let refused = outcomes
        .iter()
        .find(|o| o.status.code() == Some(5))
        .expect("one refused");
    assert!(
        stderr(refused).contains("another export holds the lock"),
        "{}",
        stderr(refused)
    );
    assert_eq!(
        read_s3_rows(&moto, "audit-bucket", "shared").len(),
        data.len()
    );
}

#[test]
fn a_missing_bucket_or_an_unwritable_prefix_fails_before_any_ssm_call() {
    let (sim, _d) = Sim::with_sessions(&generated(20, 94, &[]), &[]);
    let moto = Moto::start();
    let missing = s3_export(&sim, &moto, "s3://no-such-bucket/ssm", &[]);
    assert_refused(
        &missing,
        2,
        "bucket no-such-bucket does not exist",
        "missing",
    );

    moto.create_bucket("locked-bucket");
    let policy = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
            "Resource": "arn:aws:s3:::locked-bucket/readonly/*"
        }]
    });
    runtime().block_on(async {
        moto.client()
            .put_bucket_policy()
            .bucket("locked-bucket")
            .policy(policy.to_string())
            .send()
            .await
            .expect("policy");
    });
    let denied = s3_export(&sim, &moto, "s3://locked-bucket/readonly", &[]);
    assert_eq!(denied.status.code(), Some(2), "{}", stderr(&denied));
    let text = stderr(&denied);
    assert!(
        text.contains("cannot write under the prefix") && text.contains("access denied"),
        "{text}"
    );
    assert_eq!(sim.stat("describe_calls"), 0);
}

#[test]
fn a_permanent_s3_failure_stops_the_run_with_the_checkpoint_intact() {
    let data = generated(600, 95, &[]);
    let (sim, _d) = Sim::with_sessions(&data, &[]);
    let moto = Moto::start();
    moto.create_bucket("audit-bucket");
    let deny_partitions = serde_json::json!({
        "Version": "2012-10-17",
        "Statement": [{
            "Effect": "Deny", "Principal": "*", "Action": "s3:PutObject",
            "Resource": "arn:aws:s3:::audit-bucket/ssm/sessions/*"
        }]
    });
    let client = moto.client();
    runtime().block_on(async {
        client
            .put_bucket_policy()
            .bucket("audit-bucket")
            .policy(deny_partitions.to_string())
            .send()
            .await
            .expect("policy");
    });
    let failed = s3_export(&sim, &moto, "s3://audit-bucket/ssm", &[]);
    assert_eq!(failed.status.code(), Some(1), "{}", stderr(&failed));
    let text = stderr(&failed);
    assert!(
        text.contains("sessions/dt=")
            && text.contains("access denied")
            && text.contains("rerunning"),
        "{text}"
    );
    let calls = sim.stat("describe_ok");

    runtime().block_on(async {
        let checkpoint = client
            .get_object()
            .bucket("audit-bucket")
            .key(format!(
                "ssm/_checkpoint/{ACCOUNT}_{REGION}/checkpoint.json"
            ))
            .send()
            .await
            .expect("the checkpoint is in the bucket");
        let checkpoint: serde_json::Value =
            serde_json::from_slice(&checkpoint.body.collect().await.expect("body").into_bytes())
                .expect("JSON");
        assert_eq!(checkpoint["status"], "in_progress");
        client
            .delete_bucket_policy()
            .bucket("audit-bucket")
            .send()
            .await
            .expect("lift the policy");
    });
    assert_success(&s3_export(&sim, &moto, "s3://audit-bucket/ssm", &[]));
    // Nothing fetched again; at most one call for the seconds between the
    // two runs (a resumed window that ends now extends to the rerun's now).
    assert!(
        sim.stat("describe_ok") <= calls + 1,
        "the crawl was kept: {} calls after {calls}",
        sim.stat("describe_ok")
    );
    assert_eq!(read_s3_rows(&moto, "audit-bucket", "ssm").len(), data.len());
}

#[test]
fn conditional_writes_whose_answer_was_lost_are_recognised_when_the_sdk_retries() {
    let data = generated(600, 95, &[]);
    let (sim, _d) = Sim::with_sessions(&data, &["--latency", "150ms"]);
    let moto = Moto::start();
    moto.create_bucket("audit-bucket");
    // Each of these lands in moto and its answer is dropped: the lock's
    // create, a renewal, a checkpoint save. The SDK's retry then meets a
    // 412, which was read as "another run" before.
    static RULES: &[DropRule] = &[
        ("PUT", &["/_locks/", "if-none-match:"]),
        ("PUT", &["/_locks/", "if-match:"]),
        ("PUT", &["/checkpoint.json", "if-match:"]),
    ];
    let proxy = FaultProxy::start(&moto.endpoint, RULES);
    let result = ssm_audit_with_s3(&sim, &moto)
        .env("AWS_ENDPOINT_URL_S3", &proxy.endpoint)
        .args([
            "export",
            "--output",
            "s3://audit-bucket/lossy",
            "--page-size",
            "20",
            "--concurrency",
            "1",
            // Long enough for the SDK's retry backoff and a busy machine,
            // short enough to renew (every 2 s) during the run of ~5 s.
            "--lock-lease",
            "6s",
        ])
        .output()
        .expect("runs");
    assert_success(&result);
    assert_eq!(
        proxy.dropped.load(std::sync::atomic::Ordering::SeqCst),
        RULES.len(),
        "every rule dropped an answer"
    );
    assert_eq!(
        read_s3_rows(&moto, "audit-bucket", "lossy").len(),
        data.len()
    );
}

/// KMS signs with an ECC or an RSA key (moto signs for real); an auditor
/// verifies with kms:GetPublicKey or with the public key saved to a file,
/// and a tampered signature is named. (RSASSA-PSS is not tried here: moto
/// salts PSS at the maximum length where KMS uses the digest's.)
#[test]
fn manifests_signed_by_kms_verify_with_the_public_key_and_a_tampered_signature_is_named() {
    use aws_sdk_kms::types::{KeySpec, KeyUsageType};
    let data = generated(150, 93, &[]);
    let (sim, _d) = Sim::with_sessions(&data, &[]);
    let moto = Moto::start();
    moto.create_bucket("heads");
    let kms = moto.kms_client();
    for (spec, algorithm) in [
        (KeySpec::EccNistP256, "ECDSA_SHA_256"),
        (KeySpec::Rsa2048, "RSASSA_PKCS1_V1_5_SHA_256"),
    ] {
        let (key_id, public_der) = runtime().block_on(async {
            let key = kms
                .create_key()
                .key_spec(spec.clone())
                .key_usage(KeyUsageType::SignVerify)
                .send()
                .await
                .expect("create key");
            let key_id = key.key_metadata().expect("metadata").key_id().to_owned();
            let public = kms
                .get_public_key()
                .key_id(&key_id)
                .send()
                .await
                .expect("public key");
            (key_id, public.public_key().expect("der").as_ref().to_vec())
        });
        let out = tempfile::tempdir().expect("tempdir");
        let out_str = out.path().to_str().expect("utf-8");
        let signed = s3_export(
            &sim,
            &moto,
            out_str,
            &[
                "--sign-kms-key",
                &key_id,
                "--sign-kms-algorithm",
                algorithm,
                "--chain-head-out",
                "s3://heads/ssm-audit/head.txt",
            ],
        );
        assert_success(&signed);
        // The head kept in another bucket anchors the chain.
        let head = runtime().block_on(async {
            let object = moto
                .client()
                .get_object()
                .bucket("heads")
                .key("ssm-audit/head.txt")
                .send()
                .await
                .expect("head kept");
            let bytes = object.body.collect().await.expect("body").into_bytes();
            String::from_utf8(bytes.to_vec()).expect("utf-8")
        });
        let verify = |extra: &[&str]| {
            ssm_audit_with_s3(&sim, &moto)
                .args(["verify", "--output", out_str])
                .args(extra)
                .output()
                .expect("runs")
        };
        let with_kms = verify(&["--kms-key", &key_id, "--expect-head", head.trim()]);
        assert_success(&with_kms);
        let text = String::from_utf8_lossy(&with_kms.stdout).into_owned();
        assert!(text.contains("1 signed"), "{algorithm}: {text}");
        let public_file = out.path().join("../public.der");
        std::fs::write(&public_file, &public_der).expect("write");
        assert_success(&verify(&[
            "--public-key",
            public_file.to_str().expect("utf-8"),
        ]));

        let signature = manifest_files(out.path())[0].with_extension("sig");
        let mut value: serde_json::Value =
            serde_json::from_slice(&std::fs::read(&signature).expect("read")).expect("json");
        let mut bytes = base64::engine::general_purpose::STANDARD
            .decode(value["signature"].as_str().expect("b64"))
            .expect("b64");
        let last = bytes.len() - 1;
        bytes[last] ^= 0x01;
        value["signature"] = base64::engine::general_purpose::STANDARD
            .encode(bytes)
            .into();
        std::fs::write(&signature, value.to_string()).expect("write");
        let tampered = verify(&["--kms-key", &key_id]);
        assert_eq!(tampered.status.code(), Some(6), "{algorithm}");
        assert!(
            String::from_utf8_lossy(&tampered.stdout).contains("BAD-SIGNATURE"),
            "{algorithm}: {}",
            String::from_utf8_lossy(&tampered.stdout)
        );
    }
}

/// A bucket with Object Lock in compliance mode: exports, a rerun that
/// merges into existing partitions, and verify naming the object versions
/// it checked; nothing fails on retention.
#[test]
fn exports_into_a_compliance_locked_bucket_merge_and_verify_by_object_version() {
    use aws_sdk_s3::types::{
        DefaultRetention, ObjectLockConfiguration, ObjectLockEnabled, ObjectLockRetentionMode,
        ObjectLockRule,
    };
    let data = generated(300, 94, &[]);
    let (sim, _d) = Sim::with_sessions(&data, &[]);
    let moto = Moto::start();
    runtime().block_on(async {
        let client = moto.client();
        client
            .create_bucket()
            .bucket("locked")
            .object_lock_enabled_for_bucket(true)
            .send()
            .await
            .expect("create");
        client
            .put_object_lock_configuration()
            .bucket("locked")
            .object_lock_configuration(
                ObjectLockConfiguration::builder()
                    .object_lock_enabled(ObjectLockEnabled::Enabled)
                    .rule(
                        ObjectLockRule::builder()
                            .default_retention(
                                DefaultRetention::builder()
                                    .mode(ObjectLockRetentionMode::Compliance)
                                    .days(1)
                                    .build(),
                            )
                            .build(),
                    )
                    .build(),
            )
            .send()
            .await
            .expect("lock configuration");
    });
    let output = "s3://locked/audit";
    assert_success(&s3_export(&sim, &moto, output, &[]));
    // The next night merges into the same partitions.
    assert_success(&s3_export(&sim, &moto, output, &[]));
    let verified = ssm_audit_with_s3(&sim, &moto)
        .args(["verify", "--output", output, "--format", "json"])
        .output()
        .expect("runs");
    assert_success(&verified);
    let report: serde_json::Value = serde_json::from_slice(&verified.stdout).expect("json");
    let checked = report["checked"].as_array().expect("files");
    assert!(!checked.is_empty());
    for file in checked {
        assert!(file["object_version"].is_string(), "{file}");
    }
    assert_eq!(report["chains"][0]["length"], 2);
    // Staged parts were removed by delete markers; their versions stay
    // under retention, as compliance mode wants.
    runtime().block_on(async {
        let versions = moto
            .client()
            .list_object_versions()
            .bucket("locked")
            .prefix("audit/_checkpoint/")
            .send()
            .await
            .expect("versions");
        let staged = |key: Option<&str>| key.is_some_and(|k| k.contains("/staged/"));
        assert!(versions.delete_markers().iter().any(|m| staged(m.key())));
        let listed = moto
            .client()
            .list_objects_v2()
            .bucket("locked")
            .prefix("audit/_checkpoint/")
            .send()
            .await
            .expect("list");
        assert!(!listed.contents().iter().any(|o| staged(o.key())));
    });
    // A report into the same bucket, twice (a new version, not a failure).
    for _ in 0..2 {
        let report = ssm_audit_with_s3(&sim, &moto)
            .args(["report", "--input", output, "--format", "html"])
            .args(["--out", "s3://locked/reports/sessions.html"])
            .output()
            .expect("runs");
        assert_success(&report);
    }
    let rows = read_s3_rows(&moto, "locked", "audit/");
    assert_eq!(rows.len(), data.len());
}
