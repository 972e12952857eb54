//! Where the simulator's sessions come from: generated deterministically from
//! a seed, or loaded from a JSON Lines file in the API's own shape.
//!
//! Generation aims at the data that breaks crawlers: skew (most sessions in
//! one hour), bursts of sessions sharing one `StartDate`, every status,
//! optional fields sometimes absent, and reasons with Unicode, commas, quotes,
//! markup and formula prefixes at the 256-character limit.

use std::io::BufRead;
use std::path::{Path, PathBuf};

use super::model::{OutputUrl, SimSession};

/// What the generator makes. Every field has a flag in `ssm-sim`.
#[derive(Debug, Clone)]
pub struct GenerateSpec {
    pub count: usize,
    pub seed: u64,
    /// The simulator's "now" in epoch milliseconds; sessions start in the 30
    /// days before it.
    pub now_ms: i64,
    pub account_id: String,
    /// Share (0..=1) of sessions that start inside one hour of the window.
    pub skew_share: f64,
    /// Number of bursts, each of `burst_size` sessions sharing one StartDate.
    pub bursts: usize,
    pub burst_size: usize,
    /// Share (0..=1) of sessions still active (started in the last day).
    pub active_share: f64,
}

/// Why a data file could not be loaded; names the file and line.
#[derive(Debug, thiserror::Error)]
pub enum LoadError {
    #[error("cannot read session data file {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}:{line}: not a session in the DescribeSessions shape: {source}")]
    Parse {
        path: PathBuf,
        line: usize,
        source: serde_json::Error,
    },
    #[error("{path}:{line}: session {session_id:?} appears twice; session ids are unique")]
    Duplicate {
        path: PathBuf,
        line: usize,
        session_id: String,
    },
}

/// Reads sessions from a JSON Lines file. Each line is one session, or a whole
/// `{"Sessions": [...]}` response, so saved `aws ssm describe-sessions`
/// output can be replayed after `jq -c`.
pub fn load_jsonl(path: &Path) -> Result<Vec<SimSession>, LoadError> {
    let file = std::fs::File::open(path).map_err(|source| LoadError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut sessions = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for (index, line) in std::io::BufReader::new(file).lines().enumerate() {
        let line_no = index + 1;
        let line = line.map_err(|source| LoadError::Io {
            path: path.to_owned(),
            source,
        })?;
        if line.trim().is_empty() {
            continue;
        }
        let parse_err = |source| LoadError::Parse {
            path: path.to_owned(),
            line: line_no,
            source,
        };
        let value: serde_json::Value = serde_json::from_str(&line).map_err(parse_err)?;
        let batch: Vec<SimSession> = match value.get("Sessions") {
            Some(list) => serde_json::from_value(list.clone()).map_err(parse_err)?,
            None => vec![serde_json::from_value(value).map_err(parse_err)?],
        };
        for session in batch {
            if !seen.insert(session.session_id.clone()) {
                return Err(LoadError::Duplicate {
                    path: path.to_owned(),
                    line: line_no,
                    session_id: session.session_id,
                });
            }
            sessions.push(session);
        }
    }
    Ok(sessions)
}

const DOCUMENTS: [&str; 6] = [
    "SSM-SessionManagerRunShell",
    "AWS-StartPortForwardingSession",
    "AWS-StartPortForwardingSessionToRemoteHost",
    "AWS-StartSSHSession",
    "AWS-StartInteractiveCommand",
    "AWS-StartNonInteractiveCommand",
];

const PEOPLE: [&str; 10] = [
    "alice", "bob", "carol", "dmitri", "eun-ji", "farah", "goran", "hiroshi", "ines", "jamal",
];

const REASONS: [&str; 10] = [
    "Investigate disk pressure on the node",
    "Patch openssl, ticket CHG-1042",
    "Débogage de la file d'attente «orders»",
    "障害対応: ログの確認",
    "Restart \"payments\" worker, per on-call, see INC-77",
    "=HYPERLINK(\"http://example.invalid\",\"click\")",
    "<script>alert('owned')</script>",
    "+1 from on-call; rotate keys",
    "Überprüfung 🔧 des Dienstes, Schritt 2/3",
    "-rf cleanup of /tmp, approved by @lead",
];

const DAY_MS: i64 = 86_400_000;
/// Generated sessions start within the last 30 days less an hour, so a
/// 30-day crawl started within the hour sees every one of them.
const WINDOW_MS: i64 = 30 * DAY_MS - 3_600_000;

/// Generates `spec.count` sessions; the same spec always gives the same data.
pub fn generate(spec: &GenerateSpec) -> Vec<SimSession> {
    let mut rng = fastrand::Rng::with_seed(spec.seed);
    let targets: Vec<String> = (0..60)
        .map(|i| {
            let prefix = if i % 10 == 9 { "mi" } else { "i" };
            format!("{prefix}-0{:016x}", rng.u64(..))
        })
        .collect();
    let window_start = spec.now_ms - WINDOW_MS;
    // A fixed hour in the middle of the window that receives the skewed share.
    let hot_hour_start = window_start + 15 * DAY_MS + 14 * 3_600_000;
    let burst_starts: Vec<i64> = (0..spec.bursts)
        .map(|_| (window_start + rng.i64(DAY_MS..WINDOW_MS - DAY_MS)) / 1000 * 1000)
        .collect();
    let burst_total = spec.bursts * spec.burst_size;

    let mut sessions = Vec::with_capacity(spec.count);
    for n in 0..spec.count {
        let person = PEOPLE[rng.usize(..PEOPLE.len())];
        let is_active = rng.f64() < spec.active_share;
        let start_date = if n < burst_total.min(spec.count) {
            burst_starts[n / spec.burst_size.max(1)]
        } else if is_active {
            spec.now_ms - rng.i64(60_000..DAY_MS)
        } else if rng.f64() < spec.skew_share {
            hot_hour_start + rng.i64(0..3_600_000)
        } else {
            window_start + rng.i64(0..WINDOW_MS - 60_000)
        };
        let owner = if rng.bool() {
            format!("arn:aws:iam::{}:user/{person}", spec.account_id)
        } else {
            format!(
                "arn:aws:sts::{}:assumed-role/{}/{person}@example.com",
                spec.account_id,
                ["Admin", "OnCall", "ReadOnly"][rng.usize(..3)]
            )
        };
        let status = if is_active && n >= burst_total {
            [
                "Connected",
                "Connected",
                "Connected",
                "Connecting",
                "Disconnected",
            ][rng.usize(..5)]
        } else {
            [
                "Terminated",
                "Terminated",
                "Terminated",
                "Terminated",
                "Failed",
                "Terminating",
            ][rng.usize(..6)]
        };
        let ended = !matches!(status, "Connected" | "Connecting" | "Disconnected");
        let end_date = if ended && !(status == "Failed" && rng.bool()) {
            let duration = rng.i64(1_000..8 * 3_600_000);
            Some((start_date + duration).min(spec.now_ms))
        } else {
            None
        };
        let reason = match rng.usize(..6) {
            0 => None,
            1 => Some(long_reason(&mut rng)),
            _ => Some(REASONS[rng.usize(..REASONS.len())].to_string()),
        };
        let output_url = match rng.usize(..3) {
            0 => None,
            1 => Some(OutputUrl {
                s3_output_url: Some(String::new()),
                cloud_watch_output_url: Some(String::new()),
            }),
            _ => Some(OutputUrl {
                s3_output_url: Some(format!(
                    "https://s3.amazonaws.com/session-logs-{}/{person}-{n}.log",
                    spec.account_id
                )),
                cloud_watch_output_url: Some(format!(
                    "https://console.aws.amazon.com/cloudwatch/home#logEventViewer:group=ssm;stream={person}-{n}"
                )),
            }),
        };
        sessions.push(SimSession {
            session_id: format!("{person}-0{:016x}", rng.u64(..)),
            target: Some(targets[rng.usize(..targets.len())].clone()),
            status: Some(status.to_string()),
            start_date,
            end_date,
            document_name: (rng.usize(..10) != 0)
                .then(|| DOCUMENTS[rng.usize(..DOCUMENTS.len())].to_string()),
            owner: Some(owner),
            reason,
            details: (rng.usize(..20) == 0).then(|| "reserved".to_string()),
            output_url,
            max_session_duration: match rng.usize(..4) {
                0 => None,
                1 => Some("1440".to_string()),
                _ => Some(rng.u32(1..=720).to_string()),
            },
            access_type: match rng.usize(..5) {
                0 => None,
                1 => Some("JustInTime".to_string()),
                _ => Some("Standard".to_string()),
            },
        });
    }
    sessions
}

/// A reason at the service's 256-character limit, mixing scripts and CSV
/// metacharacters.
fn long_reason(rng: &mut fastrand::Rng) -> String {
    let pieces = ["ü, ", "\"q\" ", "日本, ", "a,b ", "€ "];
    let mut reason = String::new();
    while reason.chars().count() < 256 {
        reason.push_str(pieces[rng.usize(..pieces.len())]);
    }
    reason.chars().take(256).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec() -> GenerateSpec {
        GenerateSpec {
            count: 2_000,
            seed: 7,
            now_ms: 1_790_000_000_000,
            account_id: "123456789012".into(),
            skew_share: 0.5,
            bursts: 2,
            burst_size: 100,
            active_share: 0.05,
        }
    }

    #[test]
    fn generation_is_deterministic_and_unique() {
        let a = generate(&spec());
        let b = generate(&spec());
        assert_eq!(a, b);
        let ids: std::collections::HashSet<_> = a.iter().map(|s| &s.session_id).collect();
        assert_eq!(ids.len(), a.len());
    }

    #[test]
    fn generation_covers_the_hard_cases() {
        let s = generate(&spec());
        let now = spec().now_ms;
        assert!(s
            .iter()
            .all(|x| x.start_date >= now - WINDOW_MS && x.start_date <= now));
        for status in ssm_audit::api::STATUSES {
            assert!(
                s.iter().any(|x| x.status.as_deref() == Some(status)),
                "{status}"
            );
        }
        assert!(s.iter().any(|x| x.reason.is_none()));
        assert!(s
            .iter()
            .any(|x| x.reason.as_ref().is_some_and(|r| r.chars().count() == 256)));
        let first_burst = s[0].start_date;
        assert_eq!(
            s.iter().filter(|x| x.start_date == first_burst).count(),
            100
        );
        assert!(s
            .iter()
            .all(|x| x.end_date.is_none_or(|e| e >= x.start_date)));
    }

    #[test]
    fn loading_names_file_and_line() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("data.jsonl");
        std::fs::write(&path, "{\"SessionId\":\"a\",\"StartDate\":1}\n\nnot json\n")
            .expect("write");
        let err = load_jsonl(&path).expect_err("line 3 is bad").to_string();
        assert!(err.contains("data.jsonl:3"), "{err}");
    }

    #[test]
    fn loading_accepts_whole_responses() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("data.jsonl");
        std::fs::write(
            &path,
            "{\"Sessions\":[{\"SessionId\":\"a\",\"StartDate\":\"2026-01-01T00:00:00Z\"},{\"SessionId\":\"b\",\"StartDate\":1.5}]}\n",
        )
        .expect("write");
        let sessions = load_jsonl(&path).expect("loads");
        assert_eq!(sessions.len(), 2);
        assert_eq!(sessions[1].start_date, 1500);
    }
}
