//! The run manifest, `_runs/<account>_<region>/<run_id>.json`: what one
//! export was asked to do, what it crawled and called, every file it wrote
//! with its row count and SHA-256, and its link in the (account, region)'s
//! chain, so a later check can prove the data set was not altered and which
//! time it covers.

use serde::{Deserialize, Serialize};

/// Version of the manifest format written; readers refuse versions they do
/// not know. Version 2 added the chain and the crawled window.
pub const MANIFEST_VERSION: u32 = 2;

/// The versions a reader understands (1: unchained, before version 2).
pub fn readable_version(version: u32) -> bool {
    (1..=MANIFEST_VERSION).contains(&version)
}

/// One file a run wrote, as the run manifest lists it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct WrittenFile {
    pub path: String,
    pub rows: usize,
    pub bytes: u64,
    pub sha256: String,
}

/// The largest run manifest read: it lists one file per partition a run
/// wrote (a few hundred bytes each), and a larger file is not one this tool
/// wrote.
pub const MAX_MANIFEST_BYTES: u64 = 16 * 1024 * 1024;

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunManifest {
    pub manifest_version: u32,
    pub run_id: String,
    /// The run whose checkpoint this run resumed, when it did.
    pub resumed_from: Option<String>,
    /// Runs it took to finish the crawl (1 when nothing interrupted it).
    pub attempts: u32,
    pub tool_version: String,
    pub started_at: String,
    pub finished_at: String,
    pub output: String,
    pub account_id: String,
    pub region: String,
    /// The validated flags of the run.
    pub config: serde_json::Value,
    /// The window crawled (a resumed run keeps its first attempt's window).
    pub window: String,
    pub sessions: SessionCounts,
    pub api: ApiCounts,
    pub files: Vec<WrittenFile>,
    /// Partitions this run could not publish (their existing file was
    /// unreadable); their sessions wait for the next run.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub pending: Vec<PendingPartition>,
    /// What the crawl covered (version 2; version 1 has it in `config`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub crawled: Option<Crawled>,
    /// The manifest's place in its chain (version 2).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub chain: Option<crate::dataset::chain::ChainLink>,
}

/// The time a completed crawl covered: every session that started in
/// `[start, end)` was listed, unless `all_sessions` is false (the run had
/// `--filter`s or skipped the History list).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Crawled {
    pub start: chrono::DateTime<chrono::Utc>,
    pub end: chrono::DateTime<chrono::Utc>,
    pub all_sessions: bool,
}

impl RunManifest {
    /// The crawled window, from version 2's field or version 1's config.
    pub fn crawled(&self) -> Option<Crawled> {
        if let Some(crawled) = &self.crawled {
            return Some(crawled.clone());
        }
        let window = self.config.get("window")?;
        let millis = |name: &str| window.get(name)?.as_i64();
        let start = chrono::DateTime::from_timestamp_millis(millis("start")?)?;
        let end = chrono::DateTime::from_timestamp_millis(millis("end")?)?;
        let unfiltered = self
            .config
            .get("filters")
            .and_then(|f| f.as_array())
            .is_some_and(|f| f.is_empty());
        let history = self
            .config
            .get("states")
            .and_then(|s| s.as_array())
            .is_some_and(|s| s.iter().any(|v| v == "History"));
        Some(Crawled {
            start,
            end,
            all_sessions: unfiltered && history,
        })
    }
}

/// A partition left unpublished, as the run manifest records it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct PendingPartition {
    pub partition: String,
    pub reason: String,
    pub sessions: usize,
    /// The folder of the checkpoint location its sessions wait in.
    pub kept_in: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct SessionCounts {
    /// Observations in the Active list (a session can be seen more than once).
    pub seen_active: u64,
    pub seen_history: u64,
    /// Distinct sessions after dedupe.
    pub distinct: u64,
    /// Sessions the service returned for a neighbouring window, dropped
    /// there and kept by their own window.
    pub outside_window: u64,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct ApiCounts {
    /// DescribeSessions pages received.
    pub calls: u64,
    pub empty_pages: u64,
    /// HTTP attempts, retries included.
    pub attempts: u64,
    pub retries: u64,
    pub throttled: u64,
    pub server_errors: u64,
    pub transport_errors: u64,
    /// Windows crawled again from their start because the service refused
    /// their NextToken (bounded per window).
    #[serde(default)]
    pub token_restarts: u64,
}

/// A run id that sorts by start time and does not collide between hosts.
pub fn new_run_id(started: chrono::DateTime<chrono::Utc>) -> String {
    format!(
        "{}-{:08x}",
        started.format("%Y%m%dT%H%M%SZ"),
        fastrand::u32(..)
    )
}

#[cfg(test)]
mod properties {
    use super::*;
    use proptest::prelude::*;

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(256))]

        /// Any bytes in `_runs/` parse as a manifest or are refused; a
        /// manifest that parses writes back as what it read.
        #[test]
        fn any_manifest_file_parses_or_is_refused(
            bytes in proptest::collection::vec(any::<u8>(), 0..256),
            rows in any::<usize>(),
            path in "\\PC{0,40}",
        ) {
            let _ = serde_json::from_slice::<RunManifest>(&bytes);
            let file = WrittenFile { path, rows, bytes: 1, sha256: "00".into() };
            let text = serde_json::to_string(&file).expect("json");
            let back: WrittenFile = serde_json::from_str(&text).expect("parses back");
            prop_assert_eq!(back.rows, rows);
        }
    }
}
