//! Shared harness of the integration tests: starts `ssm-sim` on a free port
//! in its own temp directory (readiness is polled, never slept for), runs the
//! real `ssm-audit` binary against it, and reads the Parquet output back.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use crate::sim_model::SimSession;
use ssm_audit::dataset::record::SessionRecord;

pub const ACCOUNT: &str = "123456789012";
pub const REGION: &str = "eu-west-1";
/// The lock of the tests' (account, region) below an output.
pub const LOCK_FILE: &str = "_locks/123456789012_eu-west-1.json";

/// Where the tests' clock starts: tests never depend on the hour they run
/// at. (11:00 UTC on a Monday: mid-slice, mid-day, a weekday.) The clock then
/// advances in real time from the test binary's start ([`test_clock`]), so a
/// later run in a test still sees a later time, as the next night would.
pub const CLOCK_START: &str = "2026-11-02T11:00:00Z";

/// The tests' clock now, as the RFC 3339 instant a simulator or an export
/// starts its own clock at.
pub fn test_clock() -> String {
    chrono::DateTime::from_timestamp_millis(now_ms())
        .expect("a time")
        .to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

/// With `SSM_AUDIT_RECORD_OPERATIONS=DIR` (`make test` sets it), a new file
/// in DIR where a simulator or moto records every AWS operation it serves:
/// `tests/clients/test_iam.py` then checks the IAM policies against what
/// the whole suite's runs called.
fn operations_log(server: &str, extension: &str) -> Option<PathBuf> {
    static NEXT: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
    let dir = PathBuf::from(std::env::var_os("SSM_AUDIT_RECORD_OPERATIONS")?);
    std::fs::create_dir_all(&dir).expect("the operations directory");
    let n = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    Some(dir.join(format!("{server}-{}-{n}.{extension}", std::process::id())))
}

/// A running simulator, killed when dropped.
pub struct Sim {
    child: Child,
    pub endpoint: String,
    _dir: tempfile::TempDir,
}

impl Sim {
    pub fn start(args: &[&str]) -> Sim {
        let dir = tempfile::tempdir().expect("tempdir");
        let addr_file = dir.path().join("endpoint");
        let mut command = Command::new(env!("CARGO_BIN_EXE_ssm-sim"));
        command.arg("serve");
        if let Some(log) = operations_log("sim", "log") {
            command.arg("--operations-log").arg(log);
        }
        let child = command
            .arg("--addr-file")
            .arg(&addr_file)
            .args(["--clock-start", &test_clock()])
            .args(args)
            .env("SSM_SIM_LOG", "warn")
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("ssm-sim starts");
        let mut sim = Sim {
            child,
            endpoint: String::new(),
            _dir: dir,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            if let Ok(text) = std::fs::read_to_string(&addr_file) {
                sim.endpoint = text.trim().to_string();
                break;
            }
            if let Ok(Some(status)) = sim.child.try_wait() {
                panic!("ssm-sim exited before listening: {status}");
            }
            assert!(Instant::now() < deadline, "ssm-sim did not start listening");
            std::thread::sleep(Duration::from_millis(10));
        }
        sim
    }

    /// Starts a simulator serving exactly `sessions`.
    pub fn with_sessions(sessions: &[SimSession], args: &[&str]) -> (Sim, tempfile::TempDir) {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = write_jsonl(dir.path(), sessions);
        let mut all = vec!["--data", path.to_str().expect("utf-8 path")];
        all.extend_from_slice(args);
        (Sim::start(&all), dir)
    }

    fn get(&self, path: &str) -> String {
        let host = self.endpoint.trim_start_matches("http://");
        let mut stream = TcpStream::connect(host).expect("connect to ssm-sim");
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n"
        )
        .expect("send");
        let mut response = String::new();
        stream.read_to_string(&mut response).expect("read");
        let (_, body) = response.split_once("\r\n\r\n").expect("an HTTP response");
        body.to_string()
    }

    pub fn stats(&self) -> serde_json::Value {
        serde_json::from_str(&self.get("/_stats")).expect("stats are JSON")
    }

    pub fn stat(&self, name: &str) -> u64 {
        self.stats()[name]
            .as_u64()
            .unwrap_or_else(|| panic!("no stat {name}"))
    }

    /// The sessions the simulator holds now.
    pub fn data(&self) -> Vec<SimSession> {
        self.get("/_data")
            .lines()
            .map(|l| serde_json::from_str(l).expect("a session"))
            .collect()
    }
}

impl Drop for Sim {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn write_jsonl(dir: &Path, sessions: &[SimSession]) -> PathBuf {
    let path = dir.join(format!("sessions-{}.jsonl", fastrand::u32(..)));
    let mut text = String::new();
    for s in sessions {
        text.push_str(&serde_json::to_string(s).expect("serialises"));
        text.push('\n');
    }
    std::fs::write(&path, text).expect("write data file");
    path
}

/// The `ssm-audit` binary with a clean AWS environment pointing at nothing
/// but what the test passes (never IMDS or a real profile).
pub fn ssm_audit() -> Command {
    ssm_audit_env(Command::new(env!("CARGO_BIN_EXE_ssm-audit")))
}

/// `cmd` with the environment every ssm-audit of the tests gets (for a
/// command that starts ssm-audit itself, such as `script`).
pub fn ssm_audit_env(mut cmd: Command) -> Command {
    for (key, _) in std::env::vars() {
        // The machine's proxy too: a test that wants one sets it.
        let proxy = key.to_ascii_uppercase().ends_with("_PROXY");
        if key.starts_with("AWS_") || key.starts_with("SSM_AUDIT_") || proxy {
            cmd.env_remove(key);
        }
    }
    cmd.env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", REGION)
        .env("AWS_EC2_METADATA_DISABLED", "true")
        .env("AWS_CONFIG_FILE", "/nonexistent/ssm-audit-test-config")
        .env(
            "AWS_SHARED_CREDENTIALS_FILE",
            "/nonexistent/ssm-audit-test-credentials",
        )
        .env("SSM_AUDIT_LOG", "warn")
        .env("SSM_AUDIT_CLOCK_START", test_clock());
    cmd
}

/// `ssm-audit export` against `sim` into `output` with extra flags.
pub fn export_command(sim: &Sim, output: &Path, extra: &[&str]) -> Command {
    let mut cmd = ssm_audit();
    cmd.arg("export")
        .arg("--output")
        .arg(output)
        .arg("--endpoint-url")
        .arg(&sim.endpoint)
        .args(extra);
    cmd
}

/// Runs `ssm-audit export` against `sim` into `output` with extra flags.
pub fn export(sim: &Sim, output: &Path, extra: &[&str]) -> Output {
    export_command(sim, output, extra)
        .output()
        .expect("ssm-audit runs")
}

/// Runs `ssm-audit export` as [`export`] does, its log on stderr filtered
/// by `filter` (an `SSM_AUDIT_LOG` directive).
pub fn export_logging(sim: &Sim, output: &Path, extra: &[&str], filter: &str) -> Output {
    export_command(sim, output, extra)
        .env("SSM_AUDIT_LOG", filter)
        .output()
        .expect("ssm-audit runs")
}

/// Asserts the exit code and that stderr says `expected`; `what` names the case.
pub fn assert_refused(output: &Output, code: i32, expected: &str, what: &str) {
    let text = stderr(output);
    assert_eq!(output.status.code(), Some(code), "{what}: {text}");
    assert!(
        text.contains(expected),
        "{what}: expected {expected:?} in: {text}"
    );
}

pub fn assert_success(output: &Output) {
    assert!(
        output.status.success(),
        "ssm-audit failed with {}:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
}

pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

/// Every partition file below `output/sessions`, with its rows.
pub fn read_partitions(output: &Path) -> Vec<(String, Vec<SessionRecord>)> {
    let mut files = Vec::new();
    let sessions = output.join("sessions");
    let Ok(dates) = std::fs::read_dir(&sessions) else {
        return files;
    };
    let mut dirs: Vec<_> = dates.map(|d| d.expect("entry").path()).collect();
    dirs.sort();
    for dir in dirs {
        let mut entries: Vec<_> = std::fs::read_dir(&dir)
            .expect("partition dir")
            .map(|e| e.expect("entry").path())
            .collect();
        entries.sort();
        for file in entries {
            // Athena, like Hive, skips files whose names start with . or _.
            let name = file
                .file_name()
                .expect("name")
                .to_string_lossy()
                .into_owned();
            if name.starts_with('.') || name.starts_with('_') {
                continue;
            }
            let relative = file
                .strip_prefix(output)
                .expect("below output")
                .to_string_lossy()
                .into_owned();
            let bytes = std::fs::read(&file).expect("read partition");
            let rows =
                ssm_audit::dataset::schema::read_parquet(bytes.into()).expect("a valid partition");
            files.push((relative, rows));
        }
    }
    files
}

/// The checkpoint file of the (account, region) the tests export.
pub fn checkpoint_path(output: &Path) -> PathBuf {
    output.join(format!("_checkpoint/{ACCOUNT}_{REGION}/checkpoint.json"))
}

/// The checkpoint of the (account, region) the tests export, as JSON.
pub fn checkpoint(output: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(checkpoint_path(output)).expect("a checkpoint"))
        .expect("JSON")
}

/// All rows of the data set, by session id.
pub fn read_rows(output: &Path) -> std::collections::BTreeMap<String, SessionRecord> {
    let mut rows = std::collections::BTreeMap::new();
    for (path, records) in read_partitions(output) {
        for r in records {
            let id = r.session_id.clone();
            if let Some(previous) = rows.insert(id.clone(), r.clone()) {
                panic!("{id} appears twice (again in {path}):\n{previous:?}\n{r:?}");
            }
        }
    }
    rows
}

/// Checks one exported row against the session the simulator served.
pub fn assert_same_session(row: &SessionRecord, s: &SimSession) {
    assert_eq!(row.session_id, s.session_id);
    assert_eq!(row.account_id, ACCOUNT);
    assert_eq!(row.region, REGION);
    assert_eq!(row.status, s.status, "{}", s.session_id);
    assert_eq!(row.target, s.target, "{}", s.session_id);
    assert_eq!(row.owner, s.owner, "{}", s.session_id);
    assert_eq!(row.document_name, s.document_name, "{}", s.session_id);
    assert_eq!(row.reason, s.reason, "{}", s.session_id);
    assert_eq!(row.details, s.details, "{}", s.session_id);
    assert_eq!(row.access_type, s.access_type, "{}", s.session_id);
    assert_eq!(
        row.s3_output_url,
        s.output_url.as_ref().and_then(|u| u.s3_output_url.clone())
    );
    assert_eq!(
        row.cloudwatch_output_url,
        s.output_url
            .as_ref()
            .and_then(|u| u.cloud_watch_output_url.clone())
    );
    assert_eq!(
        row.max_session_duration_minutes,
        s.max_session_duration
            .as_ref()
            .map(|m| m.parse::<i32>().expect("minutes"))
    );
    assert_eq!(row.start_date, s.start_date, "{}", s.session_id);
    assert_eq!(row.end_date, s.end_date, "{}", s.session_id);
    assert!(row.first_seen_at <= row.last_seen_at);
}

/// Sessions the simulator serves over a window: all of Active, and History
/// within its 30 days.
pub fn generated(count: usize, seed: u64, extra: &[&str]) -> Vec<SimSession> {
    let out = Command::new(env!("CARGO_BIN_EXE_ssm-sim"))
        .args([
            "generate",
            "--sessions",
            &count.to_string(),
            "--seed",
            &seed.to_string(),
            "--now",
            CLOCK_START,
        ])
        .args(extra)
        .output()
        .expect("ssm-sim generate runs");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(|l| serde_json::from_str(l).expect("a session"))
        .collect()
}

/// A terminated session for hand-made data sets.
pub fn session(id: &str, start_ms: i64) -> SimSession {
    SimSession {
        session_id: id.to_string(),
        target: Some("i-0123456789abcdef0".into()),
        status: Some("Terminated".into()),
        start_date: start_ms,
        end_date: Some(start_ms + 60_000),
        document_name: Some("SSM-SessionManagerRunShell".into()),
        owner: Some(format!("arn:aws:iam::{ACCOUNT}:user/alice")),
        reason: None,
        details: None,
        output_url: None,
        max_session_duration: None,
        access_type: Some("Standard".into()),
    }
}

/// The tests' clock in epoch milliseconds: [`CLOCK_START`] when the test
/// binary first asked, advancing in real time since.
pub fn now_ms() -> i64 {
    static STARTED: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let elapsed = STARTED.get_or_init(Instant::now).elapsed();
    chrono::DateTime::parse_from_rfc3339(CLOCK_START)
        .expect("an RFC 3339 time")
        .timestamp_millis()
        + elapsed.as_millis() as i64
}

/// A running `moto_server` (S3) on a free loopback port, killed when dropped.
pub struct Moto {
    child: Child,
    pub endpoint: String,
}

/// The moto_server of the project's venv (`make venv`), or $MOTO_SERVER.
fn moto_binary() -> PathBuf {
    if let Some(path) = std::env::var_os("MOTO_SERVER") {
        return PathBuf::from(path);
    }
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(".venv/bin/moto_server");
    assert!(
        path.exists(),
        "{} is missing: run `make venv` first",
        path.display()
    );
    path
}

impl Moto {
    pub fn start() -> Moto {
        // moto_server cannot report a port it picked, so take a free one and
        // hand it over; readiness is then polled over HTTP.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .expect("bind")
            .local_addr()
            .expect("addr")
            .port();
        let mut command = Command::new(moto_binary());
        if let Some(log) = operations_log("moto", "jsonl") {
            command
                .env("MOTO_ENABLE_RECORDING", "True")
                .env("MOTO_RECORDER_FILEPATH", log);
        }
        let child = command
            .args(["-H", "127.0.0.1", "-p", &port.to_string()])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("moto_server starts");
        let mut moto = Moto {
            child,
            endpoint: format!("http://127.0.0.1:{port}"),
        };
        let deadline = Instant::now() + Duration::from_secs(60);
        loop {
            if let Ok(mut stream) = TcpStream::connect(("127.0.0.1", port)) {
                let request = format!("GET /moto-api/ HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nConnection: close\r\n\r\n");
                let mut response = String::new();
                if stream.write_all(request.as_bytes()).is_ok()
                    && stream.read_to_string(&mut response).is_ok()
                    && response.starts_with("HTTP/1.1 200")
                {
                    break;
                }
            }
            if let Ok(Some(status)) = moto.child.try_wait() {
                panic!("moto_server exited before serving: {status}");
            }
            assert!(Instant::now() < deadline, "moto_server did not start");
            std::thread::sleep(Duration::from_millis(20));
        }
        moto
    }

    /// An S3 client for the test itself (setting up buckets, reading back).
    pub fn client(&self) -> aws_sdk_s3::Client {
        let config = aws_sdk_s3::Config::builder()
            .behavior_version_latest()
            .endpoint_url(&self.endpoint)
            .region(aws_sdk_s3::config::Region::new("us-east-1"))
            .credentials_provider(aws_sdk_s3::config::Credentials::new(
                "test", "test", None, None, "tests",
            ))
            .force_path_style(true)
            .build();
        aws_sdk_s3::Client::from_conf(config)
    }

    /// A KMS client for the test itself (creating keys, reading them).
    pub fn kms_client(&self) -> aws_sdk_kms::Client {
        let config = aws_sdk_kms::Config::builder()
            .behavior_version_latest()
            .endpoint_url(&self.endpoint)
            .region(aws_sdk_kms::config::Region::new(REGION))
            .credentials_provider(aws_sdk_kms::config::Credentials::new(
                "test", "test", None, None, "tests",
            ))
            .build();
        aws_sdk_kms::Client::from_conf(config)
    }

    pub fn create_bucket(&self, bucket: &str) {
        runtime().block_on(async {
            self.client()
                .create_bucket()
                .bucket(bucket)
                .send()
                .await
                .expect("create bucket");
        });
    }
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

/// `ssm-audit` pointed at the simulator for SSM and STS and at moto for S3.
pub fn ssm_audit_with_s3(sim: &Sim, moto: &Moto) -> Command {
    let mut cmd = ssm_audit();
    cmd.env("AWS_ENDPOINT_URL_SSM", &sim.endpoint)
        .env("AWS_ENDPOINT_URL_STS", &sim.endpoint)
        .env("AWS_ENDPOINT_URL_S3", &moto.endpoint)
        .env("AWS_ENDPOINT_URL_KMS", &moto.endpoint)
        .env("SSM_AUDIT_S3_FORCE_PATH_STYLE", "true");
    cmd
}

/// Every partition below `s3://bucket/prefix/sessions/`, with its rows.
pub fn read_s3_rows(
    moto: &Moto,
    bucket: &str,
    prefix: &str,
) -> std::collections::BTreeMap<String, SessionRecord> {
    use ssm_audit::storage::Storage;
    let storage =
        ssm_audit::storage::S3Storage::new(moto.client(), bucket, prefix, Default::default());
    runtime().block_on(async {
        let mut rows = std::collections::BTreeMap::new();
        for key in storage.list("sessions/").await.expect("list") {
            let bytes = storage
                .get(&key)
                .await
                .expect("get")
                .expect("listed object exists");
            for r in ssm_audit::dataset::schema::read_parquet(bytes).expect("a valid partition") {
                let id = r.session_id.clone();
                assert!(rows.insert(id.clone(), r).is_none(), "{id} appears twice");
            }
        }
        rows
    })
}

/// An HTTP proxy on loopback in front of `upstream` that forwards every
/// request and, for the first request of each rule that matches, lets the
/// request land and drops its answer (closes the connection unanswered), as
/// a network failure does. The client then retries the request.
pub struct FaultProxy {
    pub endpoint: String,
    /// How many answers were dropped.
    pub dropped: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

/// A request the proxy matches: its method, and text its request line and
/// headers must contain (lower-cased header names).
pub type DropRule = (&'static str, &'static [&'static str]);

impl FaultProxy {
    pub fn start(upstream: &str, rules: &'static [DropRule]) -> FaultProxy {
        use std::sync::atomic::{AtomicBool, AtomicUsize};
        use std::sync::Arc;
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let endpoint = format!("http://{}", listener.local_addr().expect("addr"));
        let upstream = upstream.trim_start_matches("http://").to_owned();
        let dropped = Arc::new(AtomicUsize::new(0));
        let used: Arc<Vec<AtomicBool>> =
            Arc::new(rules.iter().map(|_| AtomicBool::new(false)).collect());
        let counter = dropped.clone();
        std::thread::spawn(move || {
            for client in listener.incoming().flatten() {
                let (upstream, used, counter) = (upstream.clone(), used.clone(), counter.clone());
                std::thread::spawn(move || {
                    proxy_connection(client, &upstream, rules, &used, &counter)
                });
            }
        });
        FaultProxy { endpoint, dropped }
    }
}

/// Serves one request of a client connection over its own upstream
/// connection, closed after the answer (so the answer needs no parsing);
/// the answer asks the client to close too.
fn proxy_connection(
    mut client: TcpStream,
    upstream: &str,
    rules: &[DropRule],
    used: &[std::sync::atomic::AtomicBool],
    dropped: &std::sync::atomic::AtomicUsize,
) {
    use std::io::BufRead;
    use std::sync::atomic::Ordering;
    let mut reader = std::io::BufReader::new(client.try_clone().expect("clone"));
    {
        // The request head.
        let mut head = Vec::new();
        loop {
            let mut line = Vec::new();
            match reader.read_until(b'\n', &mut line) {
                Ok(0) | Err(_) => return,
                Ok(_) => {}
            }
            let end = line == b"\r\n";
            head.extend_from_slice(&line);
            if end {
                break;
            }
        }
        let text = String::from_utf8_lossy(&head).to_string();
        let lower = text.to_lowercase();
        let header = |name: &str| {
            lower.lines().find_map(|l| {
                l.strip_prefix(&format!("{name}:"))
                    .map(|v| v.trim().to_owned())
            })
        };
        // The body: by Content-Length, or chunked to its last chunk.
        let mut body = Vec::new();
        if let Some(length) = header("content-length").and_then(|v| v.parse::<usize>().ok()) {
            body.resize(length, 0);
            if reader.read_exact(&mut body).is_err() {
                return;
            }
        } else if header("transfer-encoding").is_some_and(|v| v.contains("chunked")) {
            loop {
                let mut size_line = Vec::new();
                if reader.read_until(b'\n', &mut size_line).unwrap_or(0) == 0 {
                    return;
                }
                body.extend_from_slice(&size_line);
                let size_text = String::from_utf8_lossy(&size_line);
                let size =
                    usize::from_str_radix(size_text.trim().split(';').next().unwrap_or("0"), 16)
                        .unwrap_or(0);
                if size == 0 {
                    // Trailers, up to the blank line.
                    loop {
                        let mut line = Vec::new();
                        if reader.read_until(b'\n', &mut line).unwrap_or(0) == 0 {
                            return;
                        }
                        body.extend_from_slice(&line);
                        if line == b"\r\n" {
                            break;
                        }
                    }
                    break;
                }
                let mut chunk = vec![0; size + 2];
                if reader.read_exact(&mut chunk).is_err() {
                    return;
                }
                body.extend_from_slice(&chunk);
            }
        }
        // Forward it, asking the upstream to close after answering.
        let forwarded: String = text
            .split("\r\n")
            .filter(|l| !l.to_lowercase().starts_with("connection:"))
            .collect::<Vec<_>>()
            .join("\r\n");
        let forwarded =
            forwarded.trim_end_matches("\r\n").to_owned() + "\r\nConnection: close\r\n\r\n";
        let Ok(mut server) = TcpStream::connect(upstream) else {
            return;
        };
        if server.write_all(forwarded.as_bytes()).is_err() || server.write_all(&body).is_err() {
            return;
        }
        let mut answer = Vec::new();
        if server.read_to_end(&mut answer).is_err() {
            return;
        }
        let matched = rules.iter().zip(used).any(|((method, needles), used)| {
            text.starts_with(&format!("{method} "))
                && needles.iter().all(|n| lower.contains(&n.to_lowercase()))
                && !used.swap(true, Ordering::SeqCst)
        });
        if matched {
            dropped.fetch_add(1, Ordering::SeqCst);
            let _ = client.shutdown(std::net::Shutdown::Both);
            return;
        }
        // The answer says Connection: close; the client opens a new one.
        let _ = client.write_all(&answer);
        let _ = client.shutdown(std::net::Shutdown::Both);
    }
}

/// The run manifests below an output folder, oldest first: in chain order,
/// since two runs in one second have names that need not sort as they ran
/// (each (account, region) keeps its chain in a folder of `_runs/`).
pub fn manifest_files(output: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let Ok(folders) = std::fs::read_dir(output.join("_runs")) else {
        return files;
    };
    for folder in folders {
        let folder = folder.expect("entry").path();
        if !folder.is_dir() {
            continue;
        }
        for file in std::fs::read_dir(&folder).expect("read chain folder") {
            let path = file.expect("entry").path();
            if path.extension().is_some_and(|e| e == "json") {
                files.push(path);
            }
        }
    }
    files.sort_by_key(|path| {
        let manifest: serde_json::Value =
            serde_json::from_slice(&std::fs::read(path).expect("read manifest")).expect("JSON");
        (manifest["chain"]["sequence"].as_u64(), path.clone())
    });
    files
}
