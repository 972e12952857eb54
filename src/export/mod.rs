//! The export job end to end: pre-flight of the output, the account and
//! region from AWS, the output lock, the checkpoint (fresh or resumed), crawl
//! and staging side by side, publish, the run manifest, and clean-up.
//!
//! Order matters for the invariants: nothing is written before the output and
//! AWS answered the pre-flight; a checkpoint records a page only after the
//! page is staged durably; a partition is published only once every job is
//! done; the checkpoint is marked complete only after the manifest is
//! durable; staged parts are removed only after that.

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::mpsc;

use crate::aws::{self, AwsError, CallCounters};
use crate::config::{ConfigError, ExportConfig, Location, Signing};
use crate::dataset::chain::ChainHead;
use crate::dataset::layout;
use crate::dataset::manifest::{self, ApiCounts, Crawled, RunManifest, SessionCounts, WrittenFile};
use crate::dataset::sha256_hex;
use crate::evidence;
use crate::evidence::sign::{SignError, Signer};
use crate::export::plan::{plan_jobs, StartDateLayout};
use crate::progress::{self, PairProgress, Progress};
use crate::shutdown::CancellationToken;
use crate::storage::{AnyStorage, Fenced, LocalStorage, Storage, StorageError};
use crate::time::{format_filter_time, Clock};
use checkpoint::{Checkpoint, CheckpointError, CheckpointStatus, CheckpointStore, JobSpec};
use crawl::{CrawlError, CrawlOptions, Page};
use lock::LockError;
use pace::Pacer;
use plan::CrawlJob;
use publish::PublishError;
use stage::{StageError, Stager};

pub mod checkpoint;
pub mod crawl;
pub mod dedupe;
pub mod fleet;
pub mod lock;
pub mod metrics;
pub mod pace;
pub mod plan;
pub mod publish;
pub mod stage;

/// Why an export did not complete. `crate::exit` maps each to an exit code.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("the crawl is incomplete: {0}. Nothing partial was published; the checkpoint is saved, so rerunning the same command resumes")]
    Crawl(CrawlError),
    #[error(
        "{summary}; but {count} partition(s) could not be merged and were left as they are: {list}. Their sessions are kept in the checkpoint location and published by the next run once the file is readable (move it aside, or upgrade ssm-audit if it is newer)",
        count = pending.len(),
        list = pending.iter().map(|p| format!("{} ({})", p.partition, p.reason)).collect::<Vec<_>>().join("; ")
    )]
    PartlyPublished {
        summary: Box<ExportSummary>,
        pending: Vec<manifest::PendingPartition>,
    },
    #[error("the caller's identity cannot name the output's keys: {0}; check the STS endpoint and credentials")]
    Identity(String),
    #[error("interrupted by a signal; the checkpoint is saved and nothing partial was published, so rerunning the same command resumes")]
    Interrupted,
    #[error(transparent)]
    Checkpoint(#[from] CheckpointError),
    #[error(transparent)]
    Lock(#[from] LockError),
    #[error(
        "{0}; the checkpoint keeps the last durable state, so rerunning resumes once this is fixed"
    )]
    Stage(#[from] StageError),
    #[error(
        "{0}; the checkpoint keeps the crawl, so rerunning publishes again once this is fixed"
    )]
    Publish(#[from] PublishError),
    #[error("cannot write the run manifest; rerunning publishes again")]
    Manifest(#[source] StorageError),
    #[error("cannot encode the run manifest: {0}")]
    EncodeManifest(#[source] serde_json::Error),
    #[error("cannot sign the run manifest, so none was written; rerunning publishes again: {0}")]
    Sign(#[source] SignError),
    /// The signing key file is unusable: a usage error, found before any
    /// AWS call.
    #[error(transparent)]
    SigningKey(SignError),
    #[error("the export completed, but the chain heads could not be written to {destination} (--chain-head-out): {source}. The heads are {heads}; keep them by hand, or rerun")]
    HeadOut {
        heads: String,
        destination: String,
        #[source]
        source: StorageError,
    },
    #[error(
        "{done} (account, region) pairs completed{by_earlier}, {count} failed: {list}. Rerunning the same command within --retry-window crawls only the failed pairs",
        done = completed.len() + earlier,
        by_earlier = if *earlier > 0 { format!(" ({earlier} by the run this one retried after)") } else { String::new() },
        count = failed.len(),
        list = failed.iter().map(|f| format!("{}/{} ({})", f.account_id, f.region, f.reason)).collect::<Vec<_>>().join("; ")
    )]
    PairsFailed {
        completed: Vec<ExportSummary>,
        /// Pairs not crawled because the run this one retried after
        /// completed them.
        earlier: usize,
        failed: Vec<fleet::FailedPair>,
    },
}

/// What a completed export did; printed as the one-line summary.
#[derive(Debug, Clone, Serialize)]
pub struct ExportSummary {
    pub run_id: String,
    pub resumed_from: Option<String>,
    pub account_id: String,
    pub region: String,
    pub sessions: SessionCounts,
    pub api: ApiCounts,
    pub files: Vec<WrittenFile>,
    pub window_start: String,
    pub window_end: String,
    /// The chain's new head, `ACCOUNT/REGION=SEQUENCE:SHA256`.
    pub chain_head: String,
}

impl std::fmt::Display for ExportSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let rows: usize = self.files.iter().map(|w| w.rows).sum();
        write!(
            f,
            "exported {} sessions (seen: {} active, {} history) for {}/{} from {} to {}: {} partitions written ({} rows in them); {} API calls, {} retries, {} throttled; run {}",
            self.sessions.distinct,
            self.sessions.seen_active,
            self.sessions.seen_history,
            self.account_id,
            self.region,
            self.window_start,
            self.window_end,
            self.files.len(),
            rows,
            self.api.calls,
            self.api.retries,
            self.api.throttled,
            self.run_id
        )?;
        if let Some(first) = &self.resumed_from {
            write!(f, " (resumed {first})")?;
        }
        write!(f, "; chain head {}", self.chain_head)
    }
}

/// What a completed export run did: each pair's summary, or the plan of a
/// `--dry-run`.
#[derive(Debug)]
pub enum RunOutcome {
    Exported(Vec<ExportSummary>),
    Planned(fleet::Plan),
}

/// What every (account, region) of a run shares.
pub(crate) struct Shared {
    pub(crate) config: ExportConfig,
    pub(crate) output: Arc<AnyStorage>,
    pub(crate) checkpoint_storage: Arc<AnyStorage>,
    pub(crate) checkpoint_root: String,
    pub(crate) signer: Option<Signer>,
    /// Requests in flight across every pair (`--concurrency`).
    pub(crate) in_flight: Arc<tokio::sync::Semaphore>,
    /// What the progress bar or lines show.
    pub(crate) progress: Arc<Progress>,
}

/// Runs one export: every (account, region) of its scope. Cancelling
/// `shutdown` (or its parent) stops each crawl at its next call; checkpoints
/// are saved and nothing partial is published.
pub async fn run(
    config: ExportConfig,
    shutdown: CancellationToken,
) -> Result<RunOutcome, ExportError> {
    // Local locations are checked before any AWS call; S3 ones need the SDK
    // configuration, and are checked before any SSM call.
    for (flag, location) in [
        ("--output", Some(&config.output)),
        ("--checkpoint", config.checkpoint.as_ref()),
    ] {
        if let Some(Location::Local(path)) = location {
            let local = LocalStorage::new(path.clone());
            preflight(flag, &local, "choose a writable --output and --checkpoint").await?;
        }
    }
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }
    // A key file is read before any AWS call: a wrong path costs nothing.
    let key_file_signer = match &config.signing {
        Some(Signing::KeyFile(path)) => {
            Some(Signer::from_key_file(path).map_err(ExportError::SigningKey)?)
        }
        _ => None,
    };

    let sdk_config = aws::load_sdk_config(&config.aws).await?;
    let signer = match &config.signing {
        Some(Signing::Kms { key, algorithm }) => Some(Signer::kms(
            aws::kms_client(&sdk_config),
            key.clone(),
            algorithm.clone(),
        )),
        _ => key_file_signer,
    };
    let head_out = match &config.chain_head_out {
        Some(destination) => Some((
            aws::destination_storage(destination, Some(&sdk_config), &config.aws, &config.s3)
                .await?,
            destination.to_string(),
        )),
        None => None,
    };
    let region = sdk_config
        .region()
        .map(|r| r.to_string())
        .ok_or(AwsError::NoRegion)?;
    layout::check_region(&region)
        .map_err(|reason| ConfigError::Flag(format!("{reason}; set --region or AWS_REGION")))?;
    if config.scope.dry_run {
        // The plan needs no call at all when the scope names its accounts.
        if let Some(plan) = fleet::plan_without_calls(&config, &region) {
            return Ok(RunOutcome::Planned(plan));
        }
    }
    let output = Arc::new(open_storage("--output", &config.output, &sdk_config, &config).await?);
    let (checkpoint_storage, checkpoint_root) = match &config.checkpoint {
        Some(location) => (
            Arc::new(open_storage("--checkpoint", location, &sdk_config, &config).await?),
            layout::separate_checkpoint_root(&config.output.identity()),
        ),
        None => (output.clone(), layout::CHECKPOINT_ROOT.to_owned()),
    };
    let caller = aws::account_id(&sdk_config, &config.aws).await?;
    layout::check_account_id(&caller).map_err(ExportError::Identity)?;
    let progress = Progress::new();
    let stop_progress = CancellationToken::new();
    let reporter = progress::report(progress.clone(), config.progress, stop_progress.clone());
    let shared = Arc::new(Shared {
        in_flight: Arc::new(tokio::sync::Semaphore::new(config.concurrency.max(1))),
        progress,
        config,
        output,
        checkpoint_storage,
        checkpoint_root,
        signer,
    });
    let outcome = if shared.config.scope.is_single() {
        shared.progress.add_pairs(1);
        run_pair(shared.clone(), sdk_config, caller, region, shutdown)
            .await
            .map(|summary| RunOutcome::Exported(vec![summary]))
    } else {
        fleet::run(shared.clone(), sdk_config, caller, region, shutdown).await
    };
    stop_progress.cancel();
    if let Some(reporter) = reporter {
        // The bar is cleared before the summary is printed.
        let _ = reporter.await;
    }
    match head_out {
        Some((storage, destination)) => {
            let shard = shared.config.scope.shard;
            keep_heads_apart(&storage, &destination, shard, outcome).await
        }
        None => outcome,
    }
}

/// Exports one (account, region) with `sdk_config` (its region and
/// credentials): lock, checkpoint, crawl, publish, manifest.
pub(crate) async fn run_pair(
    shared: Arc<Shared>,
    sdk_config: aws_config::SdkConfig,
    account_id: String,
    region: String,
    shutdown: CancellationToken,
) -> Result<ExportSummary, ExportError> {
    let config = &shared.config;
    let clock = config.clock;
    let started = clock.now();
    let counters = Arc::new(CallCounters::default());
    let client = aws::ssm_client(&sdk_config, counters.clone(), &account_id, &region);
    // Counted done (its whole share) when the pair ends, however it ends.
    let progress = Arc::new(shared.progress.pair());
    let run_id = manifest::new_run_id(started);

    let lock = Arc::new(
        lock::acquire(
            shared.output.clone(),
            &layout::lock_key(&account_id, &region),
            &run_id,
            config.lock_lease,
            clock,
        )
        .await?,
    );
    // The run stops on the process's signal, or here when the lock is lost.
    let run = shutdown.child_token();
    let stop_renewing = CancellationToken::new();
    let renewer = tokio::spawn(lock.clone().keep_alive(stop_renewing.clone(), run.clone()));

    let locked = Locked {
        config,
        output: Arc::new(lock.fenced(shared.output.clone())),
        checkpoints: CheckpointStore::new(
            Arc::new(lock.fenced(shared.checkpoint_storage.clone())),
            &shared.checkpoint_root,
            &account_id,
            &region,
            clock,
        ),
        client,
        counters,
        account_id: account_id.clone(),
        region: region.clone(),
        run_id,
        started,
        clock,
        signer: shared.signer.as_ref(),
        in_flight: shared.in_flight.clone(),
        progress,
    };
    // Every log line of the pair carries its run, account and region.
    let span = tracing::info_span!("pair", run_id = %locked.run_id, account_id = %account_id, region = %region);
    let result = tracing::Instrument::instrument(locked.run(run), span).await;

    stop_renewing.cancel();
    let renewal = renewer.await.unwrap_or_else(|e| {
        Err(LockError::Lost(format!(
            "the lock renewal task failed: {e}"
        )))
    });
    let released = lock.release().await;
    match (result, renewal, released) {
        (Err(ExportError::Interrupted), Err(lost), _) => Err(lost.into()),
        (Err(error), _, released) => {
            if let Err(release_error) = released {
                tracing::warn!(error = %release_error, "could not release the output lock; it is taken over once unchanged for a lease");
            }
            Err(error)
        }
        // Every write happened inside the lease (the fence saw to it), but a
        // lock that changed under the run is a sign to look at.
        (Ok(_), _, Err(lost @ LockError::Lost(_))) => Err(lost.into()),
        (Ok(summary), _, Err(release_error)) => {
            tracing::warn!(error = %release_error, "could not release the output lock; it is taken over once unchanged for a lease");
            Ok(summary)
        }
        (Ok(summary), _, Ok(())) => Ok(summary),
    }
}

/// Writes the chains' new heads to `--chain-head-out`, one line per pair,
/// once their manifests are durable (a pair that published only part still
/// moved its head). A shard writes its own file beside the named one.
async fn keep_heads_apart(
    (store, key): &(AnyStorage, String),
    destination: &str,
    shard: Option<crate::config::Shard>,
    outcome: Result<RunOutcome, ExportError>,
) -> Result<RunOutcome, ExportError> {
    let heads: Vec<&str> = match &outcome {
        Ok(RunOutcome::Exported(summaries)) => {
            summaries.iter().map(|s| s.chain_head.as_str()).collect()
        }
        Ok(RunOutcome::Planned(_)) => return outcome,
        Err(ExportError::PartlyPublished { summary, .. }) => vec![summary.chain_head.as_str()],
        Err(ExportError::PairsFailed { completed, .. }) => {
            completed.iter().map(|s| s.chain_head.as_str()).collect()
        }
        Err(_) => return outcome,
    };
    if heads.is_empty() {
        return outcome;
    }
    let text: String = heads.iter().map(|h| format!("{h}\n")).collect();
    // A shard writes `head.txt.shard-2-of-8`: shards never overwrite each
    // other's heads.
    let suffix = shard
        .map(|s| format!(".shard-{}-of-{}", s.index + 1, s.count))
        .unwrap_or_default();
    let key = format!("{key}{suffix}");
    match (
        store.put(&key, bytes::Bytes::from(text.clone())).await,
        outcome,
    ) {
        (Ok(()), outcome) => outcome,
        (Err(source), Ok(_)) => Err(ExportError::HeadOut {
            heads: text.trim_end().to_owned(),
            destination: format!("{destination}{suffix}"),
            source,
        }),
        (Err(error), outcome) => {
            tracing::error!(%error, destination, "cannot write the chain heads (--chain-head-out)");
            outcome
        }
    }
}

/// Opens a location as storage; an S3 location is pre-flighted (bucket
/// exists, prefix writable) so that a wrong bucket fails in seconds.
async fn open_storage(
    flag: &'static str,
    location: &Location,
    sdk_config: &aws_config::SdkConfig,
    config: &ExportConfig,
) -> Result<AnyStorage, ExportError> {
    let storage = aws::storage_for(location, Some(sdk_config), &config.aws, &config.s3).await?;
    if location.is_s3() {
        let hint = "check the bucket, the prefix, the region and the credentials' permissions";
        preflight(flag, &storage, hint).await?;
    }
    Ok(storage)
}

/// Checks that `flag`'s location can be written; a refusal is a usage error
/// (exit 2) that says what to check.
async fn preflight<S: Storage>(
    flag: &'static str,
    storage: &S,
    hint: &'static str,
) -> Result<(), ConfigError> {
    storage
        .preflight()
        .await
        .map_err(|source| ConfigError::Unusable { flag, hint, source })
}

/// The part of a run that happens while the output lock is held.
struct Locked<'a> {
    config: &'a ExportConfig,
    /// The output and the checkpoint, written only while the lock's fence
    /// allows (the lock itself writes around it).
    output: Arc<Fenced<AnyStorage>>,
    checkpoints: CheckpointStore<Fenced<AnyStorage>>,
    client: aws_sdk_ssm::Client,
    counters: Arc<CallCounters>,
    account_id: String,
    region: String,
    run_id: String,
    started: chrono::DateTime<chrono::Utc>,
    clock: Clock,
    signer: Option<&'a Signer>,
    in_flight: Arc<tokio::sync::Semaphore>,
    progress: Arc<PairProgress>,
}

impl Locked<'_> {
    async fn run(self, cancel: CancellationToken) -> Result<ExportSummary, ExportError> {
        let config = self.config;
        if config.restart {
            tracing::warn!("--restart: discarding any checkpoint and its staged pages");
            self.checkpoints.discard().await?;
        }
        let mut stager = Stager::new(
            self.checkpoints.storage().clone(),
            self.checkpoints.staged_prefix(),
        );
        // The History pages the plan expects, when it was cut from the last
        // night's layout.
        let mut history_pages = None;
        let mut clear_staged = false;
        let mut checkpoint = match self.checkpoints.load().await? {
            Some(mut found) if found.status == CheckpointStatus::InProgress => {
                self.checkpoints
                    .check_matches(&found, &JobSpec::of(config))?;
                found.attempts += 1;
                if config.window_ends_now() {
                    found.extend_to(
                        config.window.end,
                        config.states.contains(&crate::api::SessionState::History),
                    );
                }
                self.readmit_staged(&mut found, &mut stager).await?;
                tracing::info!(
                    first_run = %found.first_run_id,
                    attempt = found.attempts,
                    jobs_done = found.jobs_done(),
                    jobs = found.jobs.len(),
                    "resuming an unfinished crawl from its checkpoint"
                );
                found
            }
            last => {
                // A complete (or absent) checkpoint: last night's parts, if a
                // crash kept them, are published already (cleared below).
                // Its layout says where tonight's sessions are.
                clear_staged = true;
                let counts = last
                    .as_ref()
                    .map(|last| last.history_counts(&JobSpec::of(config)))
                    .unwrap_or_default();
                let max_pieces = last
                    .and_then(|last| last.useful_concurrency)
                    .map_or(config.concurrency, |useful| useful as usize);
                let plan = plan_jobs(config, &counts, max_pieces);
                if let Some(pages) = plan.history_pages {
                    tracing::info!(
                        counted_stretches = counts.len(),
                        expected_pages = pages.round() as u64,
                        history_windows = plan.jobs.len()
                            - usize::from(
                                config.states.contains(&crate::api::SessionState::Active)
                            ),
                        "History planned from where the last complete crawl found its sessions"
                    );
                }
                history_pages = plan.history_pages;
                Checkpoint::new(
                    config,
                    &self.account_id,
                    &self.region,
                    &self.run_id,
                    &plan.jobs,
                )
            }
        };
        // Sessions an earlier run could not publish join this one's. The
        // three are independent, and on S3 each is a round trip: nothing is
        // staged before they end, and a crash between them leaves parts
        // that the next run's checkpoint does not vouch for, which it
        // removes.
        let pending_prefix = self.checkpoints.pending_prefix();
        let (saved, cleared, pending_parts) = tokio::join!(
            self.checkpoints.save(&mut checkpoint),
            async {
                if clear_staged {
                    self.checkpoints.clear_staged().await
                } else {
                    Ok(())
                }
            },
            self.checkpoints.storage().list(&pending_prefix),
        );
        saved?;
        cleared?;
        let pending_parts = pending_parts.map_err(StageError::from)?;
        for key in &pending_parts {
            stager.readmit(key).await?;
        }

        let jobs = checkpoint.unfinished_jobs();
        tracing::info!(windows = jobs.len(), account_id = %self.account_id, region = %self.region, "crawl planned");
        let useful_concurrency = self
            .crawl_and_stage(jobs, history_pages, &mut checkpoint, &mut stager, cancel)
            .await?;

        let staged = stager.into_staged();
        // Removed by key once published: the run knows every part it staged.
        let staged_parts = staged.parts.clone();
        // Where tonight's sessions are, for the next night's plan: laid out
        // before publishing, where memory peaks (8 bytes a session, here
        // only).
        let history_layout = config
            .states
            .contains(&crate::api::SessionState::History)
            .then(|| {
                let window = checkpoint.window();
                StartDateLayout::of(
                    staged
                        .winners
                        .iter()
                        .map(|(_, winner)| winner.start_date)
                        .filter(|date| window.contains(*date))
                        .collect(),
                )
            });
        let counts = staged.counts.clone();
        let distinct = staged.winners.len() as u64;
        let pending = publish::Pending {
            prefix: pending_prefix,
            run_id: self.run_id.clone(),
        };
        // Where this run's manifest joins its chain is read while the days
        // publish: the lock keeps other runs of this pair from moving it,
        // and on S3 it is two round trips (the head, the pair's manifests).
        let (published, link) = tokio::join!(
            publish::publish(
                self.output.clone(),
                self.checkpoints.storage().clone(),
                staged,
                &self.account_id,
                &self.region,
                layout::days_around(config.window),
                &pending,
            ),
            evidence::chain::next_link(self.output.as_ref(), &self.account_id, &self.region),
        );
        let published = published?;
        let link = link.map_err(ExportError::Manifest)?;
        let files = published.files;

        let calls = self.counters.snapshot();
        let api = ApiCounts {
            calls: counts.pages,
            empty_pages: counts.empty_pages,
            attempts: calls.attempts,
            retries: calls.attempts.saturating_sub(counts.pages),
            throttled: calls.throttled,
            server_errors: calls.server_errors,
            transport_errors: calls.transport_errors,
            token_restarts: counts.token_restarts,
        };
        let sessions = SessionCounts {
            seen_active: counts.seen_active,
            seen_history: counts.seen_history,
            distinct,
            outside_window: counts.outside_window,
        };
        let resumed_from =
            (checkpoint.first_run_id != self.run_id).then(|| checkpoint.first_run_id.clone());
        let window = checkpoint.window();
        let crawled = match (
            chrono::DateTime::from_timestamp_millis(window.start),
            chrono::DateTime::from_timestamp_millis(window.end),
        ) {
            (Some(start), Some(end)) => Some(Crawled {
                start,
                end,
                all_sessions: config.filters.is_empty()
                    && config.states.contains(&crate::api::SessionState::History),
            }),
            _ => None,
        };
        let run_manifest = RunManifest {
            manifest_version: manifest::MANIFEST_VERSION,
            run_id: self.run_id.clone(),
            resumed_from: resumed_from.clone(),
            attempts: checkpoint.attempts,
            tool_version: env!("CARGO_PKG_VERSION").to_string(),
            started_at: self.started.to_rfc3339(),
            finished_at: self.clock.now().to_rfc3339(),
            output: self.output.location(),
            account_id: self.account_id.clone(),
            region: self.region.clone(),
            config: serde_json::to_value(config).map_err(ExportError::EncodeManifest)?,
            window: checkpoint.window.clone(),
            sessions: sessions.clone(),
            api: api.clone(),
            files: files.clone(),
            pending: published.pending.clone(),
            crawled,
            chain: Some(link.clone()),
        };
        let manifest_bytes =
            serde_json::to_vec_pretty(&run_manifest).map_err(ExportError::EncodeManifest)?;
        let manifest_key = layout::manifest_key(&self.account_id, &self.region, &self.run_id);
        let head = ChainHead {
            account_id: self.account_id.clone(),
            region: self.region.clone(),
            sequence: link.sequence,
            sha256: sha256_hex(&manifest_bytes),
            manifest: manifest_key.clone(),
        };
        // The signature goes first: a manifest is never seen unsigned.
        if let Some(signer) = self.signer {
            let signature = signer
                .sign(&manifest_key, &head.sha256)
                .await
                .map_err(ExportError::Sign)?;
            let bytes =
                serde_json::to_vec_pretty(&signature).map_err(ExportError::EncodeManifest)?;
            self.output
                .put(&layout::signature_key(&manifest_key), bytes.into())
                .await
                .map_err(ExportError::Manifest)?;
        }
        self.output
            .put(&manifest_key, manifest_bytes.into())
            .await
            .map_err(ExportError::Manifest)?;
        evidence::chain::write_head(self.output.as_ref(), &head)
            .await
            .map_err(ExportError::Manifest)?;
        tracing::info!(head = %head.anchor(), "run manifest written; keep the chain head apart from the bucket (--chain-head-out) to prove later that nothing after it was removed");

        checkpoint.status = CheckpointStatus::Complete;
        checkpoint.history_layout = history_layout;
        checkpoint.useful_concurrency =
            useful_concurrency.and_then(|useful| u32::try_from(useful).ok());
        self.checkpoints.save(&mut checkpoint).await?;
        // Staged parts are only scaffolding once the checkpoint says the run
        // is complete; a failure to remove them costs disk, not data.
        if let Err(error) = self.checkpoints.remove_staged(&staged_parts).await {
            tracing::warn!(%error, "cannot remove staged parts; the next run removes them");
        }
        // Published now, or kept again under this run's name.
        for key in &pending_parts {
            if let Err(error) = self.checkpoints.storage().delete(key).await {
                tracing::warn!(%error, %key, "cannot remove a pending part; the next run merges it again");
            }
        }

        let summary = ExportSummary {
            run_id: self.run_id,
            resumed_from,
            account_id: self.account_id,
            region: self.region,
            sessions,
            api,
            files,
            window_start: format_filter_time(window.start),
            window_end: format_filter_time(window.end),
            chain_head: head.anchor(),
        };
        if published.pending.is_empty() {
            Ok(summary)
        } else {
            Err(ExportError::PartlyPublished {
                summary: Box::new(summary),
                pending: published.pending,
            })
        }
    }

    /// Reads back the parts the checkpoint vouches for into the dedupe set.
    /// A job whose parts are not all there, readable and as staged (their
    /// count and digest chain differ: a part was deleted by a lifecycle
    /// rule, or altered) is sent back to be crawled from its start; parts
    /// no job vouches for are removed. Each part is read twice: once to
    /// check the job's chain, once to admit it, so memory holds one part.
    async fn readmit_staged(
        &self,
        checkpoint: &mut Checkpoint,
        stager: &mut Stager<Fenced<AnyStorage>>,
    ) -> Result<(), ExportError> {
        let storage = self.checkpoints.storage();
        let mut by_job: std::collections::BTreeMap<u32, Vec<(u32, String)>> =
            std::collections::BTreeMap::new();
        for key in self.checkpoints.staged_parts().await? {
            match stage::parse_part_key(&key) {
                Some((job, seq)) if seq < checkpoint.pages_done(job) => {
                    by_job.entry(job).or_default().push((seq, key));
                }
                _ => storage.delete(&key).await.map_err(StageError::from)?,
            }
        }
        let vouched: Vec<(u32, u32, String)> = checkpoint
            .jobs
            .iter()
            .filter(|j| j.pages_done > 0)
            .map(|j| (j.id, j.parts, j.parts_digest.clone()))
            .collect();
        for (job, parts, digest) in vouched {
            let mut keys = by_job.remove(&job).unwrap_or_default();
            keys.sort();
            let mut chain = String::new();
            let mut intact = keys.len() == parts as usize;
            for (seq, key) in &keys {
                if !intact {
                    break;
                }
                match storage.get(key).await.map_err(StageError::from)? {
                    Some(bytes) => {
                        chain = checkpoint::chain_part(&chain, *seq, &sha256_hex(&bytes))
                    }
                    None => intact = false,
                }
            }
            if intact && chain == digest {
                for (_, key) in &keys {
                    stager.readmit(key).await?;
                }
                continue;
            }
            tracing::warn!(
                job,
                staged = keys.len(),
                vouched_for = parts,
                "staged parts are missing or not as staged; crawling that window again"
            );
            for (_, key) in &keys {
                storage.delete(key).await.map_err(StageError::from)?;
            }
            checkpoint.restart_job(job);
        }
        Ok(())
    }

    /// Runs the crawler and stages its pages, saving the checkpoint after
    /// each batch of staged pages. Returns how many calls in flight the
    /// service's rate kept busy at the end, when it throttled.
    async fn crawl_and_stage(
        &self,
        jobs: Vec<CrawlJob>,
        history_pages: Option<f64>,
        checkpoint: &mut Checkpoint,
        stager: &mut Stager<Fenced<AnyStorage>>,
        cancel: CancellationToken,
    ) -> Result<Option<usize>, ExportError> {
        let config = self.config;
        let batch_limit = config.concurrency * 2;
        let pacer = Arc::new(Pacer::new());
        let (pages_tx, mut pages_rx) = mpsc::channel::<Page>(batch_limit);
        let crawl_options = CrawlOptions {
            concurrency: config.concurrency,
            page_size: config.page_size,
            filters: config.filters.clone(),
            account_id: self.account_id.clone(),
            region: self.region.clone(),
            clock: self.clock,
            min_split_ms: config.slice_ms,
            crawl_window: config.window,
            history_pages,
            next_job_id: checkpoint.next_job_id(),
            max_attempts: aws::max_attempts(&config.aws),
            pacer: pacer.clone(),
            in_flight: self.in_flight.clone(),
            progress: self.progress.clone(),
        };
        let crawler = tokio::spawn(crawl::crawl(
            self.client.clone(),
            jobs,
            crawl_options,
            pages_tx,
            cancel.clone(),
        ));
        let mut stage_error = None;
        let mut batch = Vec::with_capacity(batch_limit);
        // Pages already received are staged even after a cancel: they are
        // whole pages, and staging them saves fetching them again.
        let mut last_progress = std::time::Instant::now();
        while pages_rx.recv_many(&mut batch, batch_limit).await > 0 {
            let result = self.stage_batch(&mut batch, checkpoint, stager).await;
            if let Err(error) = result {
                stage_error = Some(error);
                break;
            }
            // Someone watching a long crawl (or its logs) sees it move.
            if last_progress.elapsed() >= PROGRESS_EVERY {
                last_progress = std::time::Instant::now();
                tracing::info!(
                    windows_done = checkpoint.jobs_done(),
                    windows = checkpoint.jobs.len(),
                    pages = stager.counts().pages,
                    sessions = stager.distinct_sessions(),
                    "crawling"
                );
            }
        }
        // Closing the receiver stops the crawler at its next page.
        drop(pages_rx);
        let crawl_result = crawler
            .await
            .unwrap_or_else(|e| Err(CrawlError::Panicked(format!("the crawler: {e}"))));
        if let Some(error) = stage_error {
            return Err(error);
        }
        match crawl_result {
            // Nothing throttled: no rate was learned, nothing bounds the
            // next night but its own --concurrency.
            Ok(()) => Ok(pacer
                .rate()
                .map(|_| pacer.useful_concurrency(config.concurrency))),
            Err(CrawlError::Interrupted) if cancel.is_cancelled() => Err(ExportError::Interrupted),
            Err(error) => Err(ExportError::Crawl(error)),
        }
    }

    async fn stage_batch(
        &self,
        batch: &mut Vec<Page>,
        checkpoint: &mut Checkpoint,
        stager: &mut Stager<Fenced<AnyStorage>>,
    ) -> Result<(), ExportError> {
        // Every part of the batch is durable before the checkpoint names the
        // tokens that follow them.
        for (page, part) in stager.stage_all(std::mem::take(batch)).await? {
            checkpoint.record_page(
                page.job_id,
                page.seq,
                page.next_token,
                &page.split_into,
                part.as_ref().map(|p| p.sha256.as_str()),
            );
        }
        self.checkpoints.save(checkpoint).await?;
        Ok(())
    }
}

/// How often a running crawl logs its progress.
const PROGRESS_EVERY: std::time::Duration = std::time::Duration::from_secs(30);
