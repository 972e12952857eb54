//! The crawl checkpoint: per (account, region), a human-readable JSON file
//! that says for every window job whether it is pending, in progress with the
//! `NextToken` to resume from, done, or split into other windows (listed too),
//! and how many of its pages are staged. It grows with the windows the crawl
//! actually split, not with the length of the window. Staged parts sit
//! beside it, under `staged/`.
//!
//! Invariant: a job's token and page count are recorded only after the pages
//! before that token are staged durably, and the checkpoint is written
//! atomically, so resuming never skips data. Parts beyond the recorded page
//! count (staged just before a crash) are deleted on resume and fetched again.

use std::sync::Arc;

use bytes::Bytes;
use serde::{Deserialize, Serialize};

use crate::api::SessionState;
use crate::config::{ExportConfig, UserFilter};
use crate::dataset::layout;
use crate::export::crawl::MAX_COUNTER;
use crate::export::plan::{CrawlJob, KnownCount, StartDateLayout};
use crate::storage::{Conditional, Storage, StorageError};
use crate::time::{Clock, TimeRange};

/// Version of the checkpoint format; an unknown version is refused.
pub const CHECKPOINT_VERSION: u32 = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CheckpointStatus {
    /// A crawl or publish has not finished; the next run resumes it.
    InProgress,
    /// Output and manifest are published; the next run starts afresh.
    Complete,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum JobStatus {
    Pending,
    InProgress,
    Done,
    /// Its first page is staged and the rest of its window is covered by the
    /// windows in `split_into`.
    Split,
}

/// What the crawl is: a resumed run must be asked for the same thing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobSpec {
    pub states: Vec<String>,
    /// The window as asked (`lookback 30d`, `since … until …`), not as
    /// resolved, so that rerunning the same command matches.
    pub window: String,
    /// Kept for the record, not compared (see [`JobSpec::differences`]).
    pub slice_ms: i64,
    pub filters: Vec<UserFilter>,
}

impl JobSpec {
    pub fn of(config: &ExportConfig) -> JobSpec {
        JobSpec {
            states: config
                .states
                .iter()
                .map(|s| s.as_str().to_owned())
                .collect(),
            window: config.window_spec.clone(),
            slice_ms: config.slice_ms,
            filters: config.filters.clone(),
        }
    }

    /// Human-readable differences, empty when the specs match.
    pub fn differences(&self, asked: &JobSpec) -> Vec<String> {
        let mut out = Vec::new();
        if self.states != asked.states {
            out.push(format!(
                "states {:?} (checkpoint) vs {:?} (now)",
                self.states, asked.states
            ));
        }
        if self.window != asked.window {
            out.push(format!("window {:?} vs {:?}", self.window, asked.window));
        }
        // The slice is not compared: the windows the checkpoint holds are
        // already cut, and the slice only floors the splits still to come,
        // so a crawl resumed under another one gives the same rows (an
        // operator who reruns a killed night with another `--slice` should
        // not have to crawl it again).
        if self.filters != asked.filters {
            let show = |f: &[UserFilter]| {
                f.iter()
                    .map(|f| format!("key={},value={}", f.key, f.value))
                    .collect::<Vec<_>>()
                    .join(" ")
            };
            out.push(format!(
                "filters [{}] vs [{}]",
                show(&self.filters),
                show(&asked.filters)
            ));
        }
        out
    }
}

/// Progress of one window job.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct JobProgress {
    pub id: u32,
    pub state: SessionState,
    /// The `StartDate`s the job owns; None: the whole list (Active).
    pub window: Option<TimeRange>,
    /// The window for people reading the file.
    pub covers: String,
    pub status: JobStatus,
    /// Pages staged durably, numbered 0..pages_done.
    pub pages_done: u32,
    pub next_token: Option<String>,
    /// The jobs that replaced this one when it was split.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub split_into: Vec<u32>,
    /// The staged parts this checkpoint vouches for (pages with sessions;
    /// empty pages have none), and a SHA-256 chain over their sequence
    /// numbers and contents: a resume reads every part back and crawls the
    /// job again if one is missing, unreadable or not what was staged.
    #[serde(default)]
    pub parts: u32,
    #[serde(default)]
    pub parts_digest: String,
    /// The whole pages a window cut from the last night's layout is planned
    /// to hold (see `CrawlJob::planned_pages`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub planned_pages: Option<u32>,
}

/// The part chain after one more part: `previous` chained with the part's
/// sequence number and SHA-256.
pub fn chain_part(previous: &str, seq: u32, part_sha256: &str) -> String {
    crate::dataset::sha256_hex(format!("{previous}:{seq}:{part_sha256}").as_bytes())
}

impl JobProgress {
    fn pending(job: &CrawlJob) -> JobProgress {
        JobProgress {
            id: job.id,
            state: job.state,
            window: job.window,
            covers: match job.window {
                Some(window) => window.to_string(),
                None => "the whole list".into(),
            },
            status: JobStatus::Pending,
            pages_done: job.pages_done,
            next_token: job.resume_token.clone(),
            split_into: Vec::new(),
            parts: 0,
            parts_digest: String::new(),
            planned_pages: job.planned_pages,
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Checkpoint {
    pub format_version: u32,
    pub status: CheckpointStatus,
    /// The run that started this crawl; later attempts resume it.
    pub first_run_id: String,
    pub attempts: u32,
    pub updated_at: String,
    pub account_id: String,
    pub region: String,
    pub spec: JobSpec,
    pub window_start_ms: i64,
    pub window_end_ms: i64,
    pub window: String,
    pub jobs: Vec<JobProgress>,
    /// Where the crawl found its sessions, kept when it completes: the next
    /// night's History is cut by it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub history_layout: Option<StartDateLayout>,
    /// The calls in flight the service's rate kept busy when the crawl
    /// ended (`Pacer::useful_concurrency`), kept when it completes and the
    /// service throttled: the next night's plan cuts no more pieces than
    /// that, since under a rate limit a piece more is only a part-full page
    /// more.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub useful_concurrency: Option<u32>,
}

/// A checkpoint that cannot be used as it is.
#[derive(Debug, thiserror::Error)]
pub enum CheckpointError {
    #[error("checkpoint {location} is unreadable ({reason}); nothing was deleted. Inspect or move it, or rerun with --restart to crawl afresh")]
    Corrupt { location: String, reason: String },
    #[error("checkpoint {location} has format version {found}, this ssm-audit reads version {CHECKPOINT_VERSION}; rerun with --restart to crawl afresh")]
    UnknownVersion { location: String, found: u64 },
    #[error("checkpoint {location} was written for different flags: {differences}. Rerun with the same flags to resume, or with --restart to discard it")]
    Mismatch {
        location: String,
        differences: String,
    },
    #[error("checkpoint {location} was changed by another run while this one held the output lock; stopping rather than overwrite it")]
    Conflict { location: String },
    #[error("cannot read or write the checkpoint: {0}")]
    Storage(#[from] StorageError),
    #[error("cannot encode the checkpoint: {0}")]
    Encode(#[source] serde_json::Error),
}

impl Checkpoint {
    /// Refuses counters no crawl reaches (a hand-edited or hostile file),
    /// so that nothing computed from them can overflow.
    fn check_bounds(&self) -> Result<(), String> {
        if self.jobs.len() > MAX_COUNTER as usize {
            return Err(format!("it lists {} windows", self.jobs.len()));
        }
        for job in &self.jobs {
            let largest = job
                .id
                .max(job.pages_done)
                .max(job.parts)
                .max(job.split_into.iter().copied().max().unwrap_or(0));
            if largest >= MAX_COUNTER || job.parts > job.pages_done {
                return Err(format!(
                    "window {} has counters no crawl reaches (id {}, pages {}, parts {})",
                    job.id, job.id, job.pages_done, job.parts
                ));
            }
        }
        if self.window_start_ms > self.window_end_ms {
            return Err("its window ends before it starts".into());
        }
        Ok(())
    }

    /// A fresh checkpoint for `jobs`.
    pub fn new(
        config: &ExportConfig,
        account_id: &str,
        region: &str,
        run_id: &str,
        jobs: &[CrawlJob],
    ) -> Checkpoint {
        Checkpoint {
            format_version: CHECKPOINT_VERSION,
            status: CheckpointStatus::InProgress,
            first_run_id: run_id.to_owned(),
            attempts: 1,
            updated_at: config.clock.now().to_rfc3339(),
            account_id: account_id.to_owned(),
            region: region.to_owned(),
            spec: JobSpec::of(config),
            window_start_ms: config.window.start,
            window_end_ms: config.window.end,
            window: config.window.to_string(),
            jobs: jobs.iter().map(JobProgress::pending).collect(),
            history_layout: None,
            useful_concurrency: None,
        }
    }

    pub fn window(&self) -> TimeRange {
        TimeRange {
            start: self.window_start_ms,
            end: self.window_end_ms,
        }
    }

    /// The jobs still to crawl, each continuing where it stopped.
    pub fn unfinished_jobs(&self) -> Vec<CrawlJob> {
        self.jobs
            .iter()
            .filter(|j| matches!(j.status, JobStatus::Pending | JobStatus::InProgress))
            .map(|j| CrawlJob {
                id: j.id,
                state: j.state,
                window: j.window,
                resume_token: j.next_token.clone(),
                pages_done: j.pages_done,
                planned_pages: j.planned_pages,
            })
            .collect()
    }

    /// The id a new window of this crawl gets.
    pub fn next_job_id(&self) -> u32 {
        self.jobs.iter().map(|j| j.id + 1).max().unwrap_or(0)
    }

    /// Records that page `seq` of job `job_id` is staged durably (as a part
    /// with this SHA-256, or as an empty page without one), and the windows
    /// that replace the rest of the job when it was split.
    pub fn record_page(
        &mut self,
        job_id: u32,
        seq: u32,
        next_token: Option<String>,
        split_into: &[CrawlJob],
        part_sha256: Option<&str>,
    ) {
        if let Some(job) = self.jobs.iter_mut().find(|j| j.id == job_id) {
            if let Some(sha) = part_sha256 {
                job.parts += 1;
                job.parts_digest = chain_part(&job.parts_digest, seq, sha);
            }
            job.pages_done = job.pages_done.max(seq + 1);
            job.status = match (&next_token, split_into.is_empty()) {
                (_, false) => JobStatus::Split,
                (Some(_), true) => JobStatus::InProgress,
                (None, true) => JobStatus::Done,
            };
            job.next_token = next_token;
            job.split_into = split_into.iter().map(|j| j.id).collect();
        }
        self.jobs
            .extend(split_into.iter().map(JobProgress::pending));
    }

    /// Extends a resumed crawl of a window that ends "now" to `end_ms` (this
    /// attempt's now): History gains a window from the old end, so a run
    /// that resumes never leaves the newest sessions for another night.
    pub fn extend_to(&mut self, end_ms: i64, history: bool) {
        if end_ms <= self.window_end_ms {
            return;
        }
        let extension = TimeRange {
            start: self.window_end_ms,
            end: end_ms,
        };
        if history {
            let job = CrawlJob {
                id: self.next_job_id(),
                state: SessionState::History,
                window: Some(extension),
                resume_token: None,
                pages_done: 0,
                planned_pages: None,
            };
            self.jobs.push(JobProgress::pending(&job));
        }
        self.window_end_ms = end_ms;
        self.window = TimeRange {
            start: self.window_start_ms,
            end: end_ms,
        }
        .to_string();
    }

    /// Sends a job back to be crawled from its start, because the parts it
    /// vouched for are not all there. A split job keeps its status: the
    /// windows that replaced it cover it.
    pub fn restart_job(&mut self, job_id: u32) {
        if let Some(job) = self.jobs.iter_mut().find(|j| j.id == job_id) {
            if job.status != JobStatus::Split {
                job.status = JobStatus::Pending;
                job.next_token = None;
            }
            job.pages_done = 0;
            job.parts = 0;
            job.parts_digest = String::new();
        }
    }

    /// Where a complete crawl's History sessions were, as counts over its
    /// window ([`StartDateLayout::counts`]), for planning the next crawl
    /// ([`crate::export::plan::pieces_from_counts`]). Empty unless the crawl
    /// is complete, asked for History with the same filters as `spec`
    /// (others count other sessions), and kept its layout.
    pub fn history_counts(&self, spec: &JobSpec) -> Vec<KnownCount> {
        let comparable = self.status == CheckpointStatus::Complete
            && self.spec.filters == spec.filters
            && self
                .spec
                .states
                .iter()
                .any(|s| s == SessionState::History.as_str());
        match &self.history_layout {
            Some(layout) if comparable => layout.counts(self.window()),
            _ => Vec::new(),
        }
    }

    /// Pages of `job_id` that are recorded as staged.
    pub fn pages_done(&self, job_id: u32) -> u32 {
        self.jobs
            .iter()
            .find(|j| j.id == job_id)
            .map_or(0, |j| j.pages_done)
    }

    /// Jobs that need no more calls (done, or split into others).
    pub fn jobs_done(&self) -> usize {
        self.jobs
            .iter()
            .filter(|j| matches!(j.status, JobStatus::Done | JobStatus::Split))
            .count()
    }
}

/// The largest checkpoint read: it grows with the windows split (a few
/// hundred bytes each), and a larger file is not one this tool wrote.
pub const MAX_CHECKPOINT_BYTES: u64 = 32 * 1024 * 1024;

/// Where the checkpoint of one (account, region) and its staged parts live.
/// Saves are conditional on the version last read or written, so two runs
/// can never silently overwrite each other's checkpoint.
#[derive(Debug)]
pub struct CheckpointStore<S> {
    storage: Arc<S>,
    prefix: String,
    /// Version tag of the checkpoint as this run last saw it; None: absent.
    version: std::sync::Mutex<Option<String>>,
    /// Stamps `updated_at`.
    clock: Clock,
}

impl<S: Storage> CheckpointStore<S> {
    /// `root` is the checkpoint folder's prefix in `storage` (ending in `/`,
    /// or empty for the storage's root).
    pub fn new(
        storage: Arc<S>,
        root: &str,
        account_id: &str,
        region: &str,
        clock: Clock,
    ) -> CheckpointStore<S> {
        CheckpointStore {
            storage,
            prefix: layout::checkpoint_prefix(root, account_id, region),
            version: std::sync::Mutex::new(None),
            clock,
        }
    }

    pub fn storage(&self) -> &Arc<S> {
        &self.storage
    }

    pub fn key(&self) -> String {
        format!("{}checkpoint.json", self.prefix)
    }

    pub fn staged_prefix(&self) -> String {
        format!("{}staged/", self.prefix)
    }

    /// Where the sessions of partitions a run could not publish wait.
    pub fn pending_prefix(&self) -> String {
        format!("{}pending/", self.prefix)
    }

    fn location(&self) -> String {
        format!(
            "{}/{}",
            self.storage.location().trim_end_matches('/'),
            self.key()
        )
    }

    /// The checkpoint, if there is one.
    pub async fn load(&self) -> Result<Option<Checkpoint>, CheckpointError> {
        let Some(found) = self
            .storage
            .get_versioned(&self.key(), MAX_CHECKPOINT_BYTES)
            .await?
        else {
            self.set_version(None);
            return Ok(None);
        };
        self.set_version(Some(found.version));
        let bytes = found.data;
        let corrupt = |reason: String| CheckpointError::Corrupt {
            location: self.location(),
            reason,
        };
        let value: serde_json::Value =
            serde_json::from_slice(&bytes).map_err(|e| corrupt(e.to_string()))?;
        match value.get("format_version").and_then(|v| v.as_u64()) {
            Some(v) if v == u64::from(CHECKPOINT_VERSION) => {}
            Some(found) => {
                return Err(CheckpointError::UnknownVersion {
                    location: self.location(),
                    found,
                })
            }
            None => return Err(corrupt("it has no format_version".into())),
        }
        let checkpoint: Checkpoint =
            serde_json::from_value(value).map_err(|e| corrupt(e.to_string()))?;
        checkpoint.check_bounds().map_err(corrupt)?;
        Ok(Some(checkpoint))
    }

    /// Refuses a checkpoint written for other flags.
    pub fn check_matches(
        &self,
        checkpoint: &Checkpoint,
        asked: &JobSpec,
    ) -> Result<(), CheckpointError> {
        let differences = checkpoint.spec.differences(asked);
        if differences.is_empty() {
            return Ok(());
        }
        Err(CheckpointError::Mismatch {
            location: self.location(),
            differences: differences.join("; "),
        })
    }

    fn set_version(&self, version: Option<String>) {
        *self.version.lock().unwrap_or_else(|e| e.into_inner()) = version;
    }

    /// Writes the checkpoint atomically, if nobody else wrote it since this
    /// run last read or wrote it.
    pub async fn save(&self, checkpoint: &mut Checkpoint) -> Result<(), CheckpointError> {
        checkpoint.updated_at = self.clock.now().to_rfc3339();
        let bytes =
            Bytes::from(serde_json::to_vec_pretty(checkpoint).map_err(CheckpointError::Encode)?);
        let expected = self
            .version
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let outcome = match &expected {
            Some(version) => {
                self.storage
                    .put_if_match(&self.key(), bytes, version)
                    .await?
            }
            None => self.storage.put_if_absent(&self.key(), bytes).await?,
        };
        match outcome {
            Conditional::Done { version } => {
                self.set_version(Some(version));
                Ok(())
            }
            Conditional::Conflict => Err(CheckpointError::Conflict {
                location: self.location(),
            }),
        }
    }

    /// Staged parts, whoever wrote them.
    pub async fn staged_parts(&self) -> Result<Vec<String>, CheckpointError> {
        Ok(self.storage.list(&self.staged_prefix()).await?)
    }

    /// Removes every staged part (the checkpoint file stays).
    pub async fn clear_staged(&self) -> Result<(), CheckpointError> {
        // A crawl stages a part per page: thousands at a million sessions,
        // which S3 deletes a thousand to a request.
        let keys = self.staged_parts().await?;
        self.storage.delete_all(keys).await?;
        Ok(())
    }

    /// Removes the staged parts a finished run knows of (those it staged
    /// or read back): on S3 a request per 1,000 and none for a run that
    /// staged nothing, where [`CheckpointStore::clear_staged`] lists
    /// first, a request per pair and night that most pairs of an
    /// organization would spend on nothing. A run stages no part it does
    /// not know of (a write that fails stops it before this), and anything
    /// else under the prefix is the next run's to clear as it starts. Of
    /// `parts`, only those in the staged folder go: pending parts the run
    /// read back are removed once publishing has kept what it could not
    /// write.
    pub async fn remove_staged(&self, parts: &[String]) -> Result<(), CheckpointError> {
        let prefix = self.staged_prefix();
        let staged = parts
            .iter()
            .filter(|key| key.starts_with(&prefix))
            .cloned()
            .collect();
        self.storage.delete_all(staged).await?;
        Ok(())
    }

    /// Removes the checkpoint, then its staged parts (`--restart`): a
    /// discard that dies half-way leaves parts no checkpoint vouches for
    /// (removed by the next run), never a checkpoint without its parts.
    pub async fn discard(&self) -> Result<(), CheckpointError> {
        self.storage.delete(&self.key()).await?;
        self.set_version(None);
        self.clear_staged().await?;
        Ok(())
    }
}

#[cfg(test)]
mod properties {
    use super::*;
    use crate::storage::LocalStorage;
    use proptest::prelude::*;

    fn runtime() -> tokio::runtime::Runtime {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]

        /// Any file where the checkpoint goes loads, or is refused as
        /// corrupt or of another version; never a panic, never a
        /// checkpoint with counters no crawl reaches.
        #[test]
        fn any_checkpoint_file_loads_or_is_refused(
            bytes in proptest::collection::vec(any::<u8>(), 0..512),
            id in prop_oneof![0u32..1000, any::<u32>()],
            pages in prop_oneof![0u32..1000, any::<u32>()],
            parts in prop_oneof![0u32..1000, any::<u32>()],
            start in any::<i64>(),
            end in any::<i64>(),
        ) {
            let dir = tempfile::tempdir().expect("tempdir");
            let storage = Arc::new(LocalStorage::new(dir.path()));
            let store = CheckpointStore::new(storage.clone(), "", "1", "r", Clock::system());
            // Noise, and a well-formed file with hostile counters.
            let crafted = serde_json::json!({
                "format_version": CHECKPOINT_VERSION, "status": "in_progress",
                "first_run_id": "r", "attempts": 1, "updated_at": "t",
                "account_id": "1", "region": "r",
                "spec": {"states": ["history"], "window": "w", "slice_ms": 1000, "filters": []},
                "window_start_ms": start, "window_end_ms": end, "window": "w",
                "jobs": [{"id": id, "state": "History", "window": null, "covers": "c",
                          "status": "in_progress", "pages_done": pages, "next_token": "t",
                          "parts": parts, "parts_digest": ""}]
            });
            let sane = id < 1000 && pages < 1000 && parts <= pages && start <= end;
            for (file, crafted) in [(bytes.clone(), false), (crafted.to_string().into_bytes(), true)] {
                let loaded = runtime().block_on(async {
                    storage.put(&store.key(), file.into()).await.expect("write");
                    store.load().await
                });
                if let Ok(Some(checkpoint)) = &loaded {
                    prop_assert!(checkpoint.check_bounds().is_ok());
                    prop_assert!(checkpoint.next_job_id() <= MAX_COUNTER);
                }
                if crafted && sane {
                    prop_assert!(matches!(loaded, Ok(Some(_))), "{:?}", loaded);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::storage::LocalStorage;

    fn config() -> ExportConfig {
        let cli = <crate::cli::Cli as clap::Parser>::try_parse_from([
            "ssm-audit",
            "export",
            "--output",
            "/tmp/x",
        ])
        .expect("flags");
        let crate::cli::Command::Export(args) = cli.command else {
            panic!("an export command")
        };
        ExportConfig::from_args(&args, Clock::fixed(1_790_000_000_000)).expect("valid")
    }

    /// The checkpoint store of account "1", region "r", below `root`.
    fn store_in(dir: &std::path::Path, root: &str) -> CheckpointStore<LocalStorage> {
        CheckpointStore::new(
            Arc::new(LocalStorage::new(dir)),
            root,
            "1",
            "r",
            Clock::system(),
        )
    }

    /// The jobs a first crawl plans, and its fresh checkpoint.
    fn first_night(config: &ExportConfig) -> (Vec<CrawlJob>, Checkpoint) {
        let jobs = crate::export::plan::plan_jobs(config, &[], config.concurrency).jobs;
        let checkpoint = Checkpoint::new(config, "1", "r", "run", &jobs);
        (jobs, checkpoint)
    }

    #[tokio::test]
    async fn a_finished_run_removes_the_parts_it_knows_without_listing() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Arc::new(crate::storage::watched::Watched::new(LocalStorage::new(
            dir.path(),
        )));
        let store =
            CheckpointStore::new(storage.clone(), "_checkpoint/", "1", "r", Clock::system());
        let prefix = store.staged_prefix();
        let parts: Vec<String> = [
            "history-00001-000000.parquet",
            "active-00000-000000.parquet",
        ]
        .iter()
        .map(|name| format!("{prefix}{name}"))
        .collect();
        for key in &parts {
            storage
                .put(key, Bytes::from_static(b"part"))
                .await
                .expect("put");
        }
        // A pending part read back is the run's to remove after publishing.
        let pending = format!("{}run-1-1970-01-01.parquet", store.pending_prefix());
        storage
            .put(&pending, Bytes::from_static(b"pending"))
            .await
            .expect("put");
        // An empty pair staged nothing: nothing to ask.
        store.remove_staged(&[]).await.expect("remove none");
        store
            .remove_staged(&[parts, vec![pending.clone()]].concat())
            .await
            .expect("remove");
        assert_eq!(storage.lists(), Vec::<String>::new(), "no listing");
        assert_eq!(
            store.staged_parts().await.expect("list"),
            Vec::<String>::new()
        );
        assert!(storage.get(&pending).await.expect("get").is_some());
    }

    #[tokio::test]
    async fn round_trips_and_resumes_jobs_where_they_stopped() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_in(dir.path(), "_checkpoint/");
        let config = config();
        let (jobs, mut checkpoint) = first_night(&config);
        assert_eq!(jobs.len(), 2, "Active whole, History over the window");
        checkpoint.record_page(0, 0, Some("t1".into()), &[], Some("aa"));
        let history = jobs[1].window.expect("a window");
        let middle = history.start + (history.end - history.start) / 2;
        let halves = [
            CrawlJob {
                id: 2,
                state: SessionState::History,
                window: Some(TimeRange {
                    start: history.start,
                    end: middle,
                }),
                resume_token: None,
                pages_done: 0,
                planned_pages: None,
            },
            CrawlJob {
                id: 3,
                state: SessionState::History,
                window: Some(TimeRange {
                    start: middle,
                    end: history.end,
                }),
                resume_token: None,
                pages_done: 0,
                planned_pages: None,
            },
        ];
        checkpoint.record_page(1, 0, None, &halves, None);
        checkpoint.record_page(3, 0, None, &[], Some("bb"));
        store.save(&mut checkpoint).await.expect("save");
        let loaded = store.load().await.expect("load").expect("present");
        assert_eq!(loaded, checkpoint);
        let unfinished = loaded.unfinished_jobs();
        assert_eq!(unfinished.len(), 2, "Active in progress, one half pending");
        assert_eq!(unfinished[0].resume_token.as_deref(), Some("t1"));
        assert_eq!(unfinished[0].pages_done, 1);
        assert_eq!(unfinished[1], halves[0]);
        assert_eq!(loaded.jobs_done(), 2, "the split job and the finished half");
        assert_eq!(loaded.next_job_id(), 4);
        assert_eq!(
            loaded.pages_done(1),
            1,
            "the split job's first page is staged"
        );
    }

    #[tokio::test]
    async fn a_complete_crawl_keeps_where_its_sessions_were_for_the_next_plan() {
        let dir = tempfile::tempdir().expect("tempdir");
        let store = store_in(dir.path(), "");
        let config = config();
        let (_, mut checkpoint) = first_night(&config);
        let window = checkpoint.window();
        let dates: Vec<i64> = (0..1_000).map(|i| window.start + i * 60_000).collect();
        checkpoint.history_layout = Some(StartDateLayout::of(dates));
        let spec = JobSpec::of(&config);
        assert!(
            checkpoint.history_counts(&spec).is_empty(),
            "an unfinished crawl's layout is not yet the night's"
        );
        checkpoint.status = CheckpointStatus::Complete;
        store.save(&mut checkpoint).await.expect("save");
        let loaded = store.load().await.expect("load").expect("present");
        let counts = loaded.history_counts(&spec);
        assert_eq!(counts.iter().map(|c| c.sessions).sum::<u64>(), 1_000);
        let mut other_filters = spec.clone();
        other_filters.filters.push(UserFilter {
            key: "Owner".into(),
            value: "alice".into(),
        });
        assert!(loaded.history_counts(&other_filters).is_empty());
    }

    #[tokio::test]
    async fn corrupt_unknown_and_mismatched_checkpoints_are_refused_with_the_file_named() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Arc::new(LocalStorage::new(dir.path()));
        let store = CheckpointStore::new(storage.clone(), "", "1", "r", Clock::system());
        storage
            .put(&store.key(), Bytes::from_static(b"{\"format_ver"))
            .await
            .expect("write");
        let err = store.load().await.expect_err("truncated").to_string();
        assert!(
            err.contains("1_r/checkpoint.json") && err.contains("--restart"),
            "{err}"
        );
        assert!(
            storage.get(&store.key()).await.expect("get").is_some(),
            "nothing deleted"
        );

        storage
            .put(
                &store.key(),
                Bytes::from_static(b"{\"format_version\": 99}"),
            )
            .await
            .expect("write");
        assert!(matches!(
            store.load().await,
            Err(CheckpointError::UnknownVersion { found: 99, .. })
        ));

        let config = config();
        let checkpoint = Checkpoint::new(&config, "1", "r", "run", &[]);
        let mut asked = JobSpec::of(&config);
        asked.states = vec!["History".into()];
        let err = store
            .check_matches(&checkpoint, &asked)
            .expect_err("differs")
            .to_string();
        assert!(err.contains("states"), "{err}");
        let mut asked = JobSpec::of(&config);
        asked.slice_ms *= 60;
        assert!(store.check_matches(&checkpoint, &asked).is_ok());
    }

    #[tokio::test]
    async fn a_checkpoint_changed_by_another_writer_is_not_overwritten() {
        let dir = tempfile::tempdir().expect("tempdir");
        let storage = Arc::new(LocalStorage::new(dir.path()));
        let ours = CheckpointStore::new(storage.clone(), "", "1", "r", Clock::system());
        let theirs = CheckpointStore::new(storage.clone(), "", "1", "r", Clock::system());
        let mut checkpoint = Checkpoint::new(&config(), "1", "r", "run", &[]);
        // Another writer is another run, whose checkpoint differs. The same
        // checkpoint saved by both within one millisecond would be the same
        // bytes, and a conditional write that meets its own bytes is done
        // (the storage's rule for a retry whose answer was lost).
        let mut their_checkpoint = Checkpoint::new(&config(), "1", "r", "their run", &[]);
        assert!(ours.load().await.expect("load").is_none());
        ours.save(&mut checkpoint).await.expect("create");
        assert!(
            matches!(
                theirs.save(&mut their_checkpoint).await,
                Err(CheckpointError::Conflict { .. })
            ),
            "create-only"
        );
        theirs.load().await.expect("load");
        theirs
            .save(&mut their_checkpoint)
            .await
            .expect("theirs, after reading");
        assert!(matches!(
            ours.save(&mut checkpoint).await,
            Err(CheckpointError::Conflict { .. })
        ));
    }
}
