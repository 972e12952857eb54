//! The export job end to end: pre-flight of the output, the account and
//! region from AWS, the crawl plan, crawl and staging side by side, publish,
//! the run manifest, and the clean-up of staged parts.
//!
//! Order matters for the invariants: nothing is written before the output and
//! AWS answered the pre-flight; a partition is published only from staged,
//! durable pages; the manifest is written after every partition it lists;
//! staged parts are removed only after the manifest is durable.

use std::sync::Arc;

use serde::Serialize;
use tokio::sync::{mpsc, watch};

use crate::aws::{self, AwsError, CallCounters};
use crate::config::{ConfigError, ExportConfig};
use crate::crawl::{self, CrawlError, CrawlJob, CrawlOptions};
use crate::manifest::{self, ApiCounts, RunManifest, SessionCounts};
use crate::publish::{self, PublishError, WrittenFile};
use crate::stage::{StageError, Stager};
use crate::storage::{LocalStorage, Storage, StorageError};
use crate::window::{format_filter_time, plan_slices};

/// Why an export did not complete. [`ExportError::exit_code`] is the one
/// place that decides the process's exit code.
#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Aws(#[from] AwsError),
    #[error("the crawl is incomplete and nothing was published: {0}")]
    Crawl(CrawlError),
    #[error("the run was interrupted by a signal before it finished; nothing was published")]
    Interrupted,
    #[error(transparent)]
    Stage(#[from] StageError),
    #[error(transparent)]
    Publish(#[from] PublishError),
    #[error("cannot write the run manifest: {0}")]
    Manifest(StorageError),
}

/// Exit codes, documented in the README and in `ssm-audit --help`.
pub mod exit_code {
    pub const SUCCESS: u8 = 0;
    pub const FAILURE: u8 = 1;
    pub const USAGE: u8 = 2;
    pub const INCOMPLETE: u8 = 3;
    pub const INTERRUPTED: u8 = 4;
}

impl ExportError {
    pub fn exit_code(&self) -> u8 {
        match self {
            ExportError::Config(_) => exit_code::USAGE,
            ExportError::Crawl(_) => exit_code::INCOMPLETE,
            ExportError::Interrupted => exit_code::INTERRUPTED,
            _ => exit_code::FAILURE,
        }
    }
}

/// What a completed export did; printed as the one-line summary.
#[derive(Debug, Clone, Serialize)]
pub struct ExportSummary {
    pub run_id: String,
    pub account_id: String,
    pub region: String,
    pub sessions: SessionCounts,
    pub api: ApiCounts,
    pub files: Vec<WrittenFile>,
    pub window_start: String,
    pub window_end: String,
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
        )
    }
}

/// Runs one export. `shutdown` turns true when the process is asked to stop.
pub async fn run(
    config: ExportConfig,
    shutdown: watch::Receiver<bool>,
) -> Result<ExportSummary, ExportError> {
    let started = chrono::Utc::now();
    let storage = Arc::new(LocalStorage::new(config.output.clone()));
    storage
        .preflight()
        .await
        .map_err(|e| ConfigError(format!("{e}; choose a writable --output")))?;
    for warning in &config.warnings {
        tracing::warn!("{warning}");
    }

    let sdk_config = aws::load_sdk_config(&config.aws).await?;
    let region = sdk_config
        .region()
        .map(|r| r.to_string())
        .ok_or(AwsError::NoRegion)?;
    let account_id = aws::account_id(&sdk_config, &config.aws).await?;
    let counters = Arc::new(CallCounters::default());
    let client = aws::ssm_client(&sdk_config, counters.clone());

    let run_id = manifest::new_run_id(started);
    let staging_prefix = format!("_staging/{run_id}/");
    let jobs = plan_jobs(&config);
    tracing::info!(jobs = jobs.len(), %account_id, %region, "crawl planned");

    let (pages_tx, mut pages_rx) = mpsc::channel(config.concurrency * 2);
    let crawl_options = CrawlOptions {
        concurrency: config.concurrency,
        page_size: config.page_size,
        filters: config.filters.clone(),
        account_id: account_id.clone(),
        region: region.clone(),
    };
    let crawler = tokio::spawn(crawl::crawl(
        client,
        jobs,
        crawl_options,
        pages_tx,
        shutdown.clone(),
    ));
    let mut stager = Stager::new(storage.clone(), staging_prefix.clone());
    let mut stage_error = None;
    while let Some(page) = pages_rx.recv().await {
        if let Err(error) = stager.stage(page).await {
            stage_error = Some(error);
            break;
        }
    }
    // Closing the receiver stops the crawler at its next page.
    drop(pages_rx);
    let crawl_result = crawler.await.unwrap_or_else(|e| {
        Err(CrawlError::Api {
            state: "any",
            from: String::new(),
            to: String::new(),
            message: format!("the crawler panicked: {e}"),
        })
    });
    if let Some(error) = stage_error {
        return Err(error.into());
    }
    match crawl_result {
        Ok(()) => {}
        Err(CrawlError::Interrupted) if *shutdown.borrow() => return Err(ExportError::Interrupted),
        Err(error) => return Err(ExportError::Crawl(error)),
    }

    let staged = stager.into_staged();
    let files = publish::publish(storage.as_ref(), &staged, &account_id, &region).await?;

    let calls = counters.snapshot();
    let api = ApiCounts {
        calls: staged.counts.pages,
        empty_pages: staged.counts.empty_pages,
        attempts: calls.attempts,
        retries: calls.attempts.saturating_sub(staged.counts.pages),
        throttled: calls.throttled,
        server_errors: calls.server_errors,
        transport_errors: calls.transport_errors,
    };
    let sessions = SessionCounts {
        seen_active: staged.counts.seen_active,
        seen_history: staged.counts.seen_history,
        distinct: staged.winners.len() as u64,
        outside_slice: staged.counts.outside_slice,
    };
    let run_manifest = RunManifest {
        manifest_version: manifest::MANIFEST_VERSION,
        run_id: run_id.clone(),
        tool_version: env!("CARGO_PKG_VERSION").to_string(),
        started_at: started.to_rfc3339(),
        finished_at: chrono::Utc::now().to_rfc3339(),
        output: storage.location(),
        account_id: account_id.clone(),
        region: region.clone(),
        config: serde_json::to_value(&config).unwrap_or_default(),
        sessions: sessions.clone(),
        api: api.clone(),
        files: files.clone(),
    };
    let manifest_bytes = serde_json::to_vec_pretty(&run_manifest).unwrap_or_default();
    storage
        .put(&manifest::manifest_key(&run_id), manifest_bytes.into())
        .await
        .map_err(ExportError::Manifest)?;

    // Staged parts are only scaffolding once the manifest is durable; a
    // failure to remove them costs disk, not data.
    for key in &staged.parts {
        if let Err(error) = storage.delete(key).await {
            tracing::warn!(%error, "cannot remove a staged part");
        }
    }

    Ok(ExportSummary {
        run_id,
        account_id,
        region,
        sessions,
        api,
        files,
        window_start: format_filter_time(config.window.start),
        window_end: format_filter_time(config.window.end),
    })
}

/// One job per (state, slice), newest slices first: the newest are where the
/// service holds the most, and where Active sessions are.
pub fn plan_jobs(config: &ExportConfig) -> Vec<CrawlJob> {
    let mut slices = plan_slices(config.window, config.slice_ms);
    slices.reverse();
    let mut jobs = Vec::with_capacity(slices.len() * config.states.len());
    for state in &config.states {
        for slice in &slices {
            jobs.push(CrawlJob {
                id: jobs.len() as u32,
                state: *state,
                slice: *slice,
                resume_token: None,
                pages_done: 0,
            });
        }
    }
    jobs
}
