//! The crawler: a fixed pool of `--concurrency` workers pages DescribeSessions
//! through a shared queue of windows, so requests in flight never exceed
//! `--concurrency` however many windows there are, and hands each page to the
//! stager through a bounded channel (backpressure, not buffering).
//!
//! A window is followed to its last `NextToken`, across short and empty
//! pages. When one of a window's first pages is full and has a `NextToken`
//! while workers wait for work, the window may be split (see
//! `plan::split_window`, which decides whether that pays): the
//! page goes to the stager with the new sub-windows attached, so the
//! checkpoint learns them in the same save as the page, and only then are
//! they queued. The crawl ends when the queue is empty and no worker holds a
//! window. The first failure, or the shutdown token, stops every worker at
//! its next call.

use std::collections::{HashSet, VecDeque};
use std::sync::{Arc, Mutex};

use aws_sdk_ssm::error::ProvideErrorMetadata;
use aws_sdk_ssm::types::{SessionFilter, SessionFilterKey};
use tokio::sync::{mpsc, Notify};
use tokio::task::JoinSet;

use crate::api::SessionState;
use crate::aws::{self, Failure};
use crate::config::UserFilter;
use crate::dataset::record::SessionRecord;
use crate::export::pace::{Outcome, Pacer};
use crate::export::plan::{
    estimated_pages, split_window, straggler_pieces, CrawlJob, Found, FIRST_WINDOW_ALLOWANCE,
};
use crate::progress::PairProgress;
use crate::shutdown::CancellationToken;
use crate::text::{error_text, printable};
use crate::time::{Clock, TimeRange};

/// One page of one job, converted and trimmed to the job's window.
#[derive(Debug)]
pub struct Page {
    pub job_id: u32,
    pub state: SessionState,
    /// 0-based sequence number of the page within its job.
    pub seq: u32,
    pub records: Vec<SessionRecord>,
    /// The token for the next page; None when the job is complete.
    pub next_token: Option<String>,
    /// Sessions the service returned outside the window (a neighbour's).
    pub outside_window: usize,
    /// Sub-windows that replace the rest of this job (a split); the job is
    /// complete once they are recorded.
    pub split_into: Vec<CrawlJob>,
    /// Times the window started again from its beginning, since its last
    /// page, because the service refused its `NextToken`.
    pub token_restarts: u32,
}

/// A token's fingerprint, to notice it coming back without keeping it.
fn token_hash(token: &str) -> u64 {
    use std::hash::{BuildHasher, BuildHasherDefault};
    BuildHasherDefault::<std::collections::hash_map::DefaultHasher>::default().hash_one(token)
}

/// Settings shared by every job of a crawl.
#[derive(Debug, Clone)]
pub struct CrawlOptions {
    pub concurrency: usize,
    pub page_size: i32,
    pub filters: Vec<UserFilter>,
    pub account_id: String,
    pub region: String,
    /// Stamps when each page was observed.
    pub clock: Clock,
    /// Windows narrower than this are never split (`--slice`).
    pub min_split_ms: i64,
    /// The History window as asked: a job over all of it is its state's
    /// first window, which may spend `plan::FIRST_WINDOW_ALLOWANCE` calls on
    /// finding where the data is.
    pub crawl_window: TimeRange,
    /// The pages History is expected to hold when its first windows were
    /// cut from the last night's layout: it stands for the estimate a first
    /// split would make (see `Queue::set_planned_estimate`).
    pub history_pages: Option<f64>,
    /// The id the first sub-window of a split gets.
    pub next_job_id: u32,
    /// Attempts per call, retries included (`--max-attempts`).
    pub max_attempts: u32,
    /// Requests in flight across every (account, region) of the run: each
    /// attempt holds a permit once its pacer lets it go.
    pub in_flight: Arc<tokio::sync::Semaphore>,
    /// The pace of this (account, region)'s calls, shared by its workers.
    pub pacer: Arc<Pacer>,
    /// Windows, sessions and calls, for the progress bar or lines.
    pub progress: Arc<PairProgress>,
}

/// Why a crawl stopped before every job was complete.
#[derive(Debug, thiserror::Error)]
pub enum CrawlError {
    #[error("DescribeSessions failed for {job} after {attempts} attempts: {message}")]
    Api {
        job: String,
        attempts: u32,
        message: String,
    },
    #[error("DescribeSessions for {job} returned {returned} sessions on one page, more than the {asked} asked for; the endpoint does not behave like the service, check --endpoint-url")]
    OversizedPage {
        job: String,
        returned: usize,
        asked: i32,
    },
    #[error("DescribeSessions for {job} gave a NextToken on page {page} that it had given before: the service is paging in a circle; nothing was published, rerun to resume")]
    RepeatedToken { job: String, page: u32 },
    #[error("DescribeSessions for {job} gave a NextToken on each of {pages} pages, more than any 30 days hold; nothing was published, check --endpoint-url")]
    EndlessWindow { job: String, pages: u32 },
    #[error("DescribeSessions for {job} refused its NextToken more than {restarts} times; nothing was published, rerun later")]
    TokenRestarts { job: String, restarts: u32 },
    #[error("{0} failed unexpectedly; this is a bug in ssm-audit, please report it")]
    Panicked(String),
    #[error("the crawl was stopped by a shutdown signal")]
    Interrupted,
    #[error("the page consumer stopped before the crawl ended")]
    ConsumerGone,
}

/// Crawls every job in `jobs` and every window split from them, sending
/// pages to `pages`. Returns once all are complete, or with the first error
/// after all workers have stopped.
///
/// Active is crawled before History starts: a session that ends while the
/// crawl runs moves from Active to History, and only this order sees every
/// session that existed when the crawl began (open in Active, or ended in
/// History). A session seen open is closed by a later night's History crawl.
pub async fn crawl(
    client: aws_sdk_ssm::Client,
    jobs: Vec<CrawlJob>,
    options: CrawlOptions,
    pages: mpsc::Sender<Page>,
    shutdown: CancellationToken,
) -> Result<(), CrawlError> {
    options.progress.windows_queued(jobs.len());
    let (active, history): (Vec<_>, Vec<_>) = jobs
        .into_iter()
        .partition(|job| job.state == SessionState::Active);
    for (phase, expected_pages) in [(active, None), (history, options.history_pages)] {
        if !phase.is_empty() {
            run_pool(&client, phase, expected_pages, &options, &pages, &shutdown).await?;
        }
    }
    Ok(())
}

/// Runs the worker pool over `jobs` until they and their splits are done.
async fn run_pool(
    client: &aws_sdk_ssm::Client,
    jobs: Vec<CrawlJob>,
    expected_pages: Option<f64>,
    options: &CrawlOptions,
    pages: &mpsc::Sender<Page>,
    shutdown: &CancellationToken,
) -> Result<(), CrawlError> {
    let queue = Arc::new(Queue::new(jobs, options.next_job_id));
    if let Some(pages) = expected_pages {
        queue.set_planned_estimate(pages);
    }
    // Cancelled by the caller, or here once one worker has failed.
    let stop = shutdown.child_token();
    let mut workers = JoinSet::new();
    let concurrency = options.concurrency.max(1);
    for _ in 0..concurrency {
        let worker = Worker {
            client: client.clone(),
            options: options.clone(),
            concurrency,
            queue: queue.clone(),
            pages: pages.clone(),
            stop: stop.clone(),
        };
        workers.spawn(worker.run());
    }
    let mut first_error = None;
    while let Some(joined) = workers.join_next().await {
        let result =
            joined.unwrap_or_else(|e| Err(CrawlError::Panicked(format!("a crawl worker: {e}"))));
        if let Err(error) = result {
            stop.cancel();
            // A real failure explains more than the interruptions it causes.
            let replace = matches!(
                (&first_error, &error),
                (None, _)
                    | (
                        Some(CrawlError::Interrupted | CrawlError::ConsumerGone),
                        CrawlError::Api { .. } | CrawlError::Panicked(_)
                    )
            );
            if replace {
                first_error = Some(error);
            }
        }
    }
    first_error.map_or(Ok(()), Err)
}

/// The shared work queue: windows waiting, and how many workers hold one
/// (a held window may still split into more work).
#[derive(Debug)]
struct Queue {
    state: Mutex<QueueState>,
    changed: Notify,
}

#[derive(Debug)]
struct QueueState {
    waiting: VecDeque<CrawlJob>,
    held: usize,
    next_id: u32,
    /// One worker's share of the pages, as the first split estimated them.
    fair_share: Option<f64>,
    /// The pages the first split estimated for the whole state.
    first_estimate: Option<f64>,
}

impl Queue {
    fn new(jobs: Vec<CrawlJob>, next_id: u32) -> Queue {
        Queue {
            state: Mutex::new(QueueState {
                waiting: VecDeque::from(jobs),
                held: 0,
                next_id,
                fair_share: None,
                first_estimate: None,
            }),
            changed: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, QueueState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The next window, or None once nothing waits and nothing is held.
    async fn take(&self, stop: &CancellationToken) -> Option<CrawlJob> {
        loop {
            // Registered before the check, so a change in between wakes it.
            let changed = self.changed.notified();
            {
                let mut state = self.lock();
                if let Some(job) = state.waiting.pop_front() {
                    state.held += 1;
                    return Some(job);
                }
                if state.held == 0 {
                    return None;
                }
            }
            tokio::select! {
                () = changed => {}
                () = stop.cancelled() => return None,
            }
        }
    }

    /// Workers that would take a window now if one were queued.
    fn hungry(&self, concurrency: usize) -> usize {
        let state = self.lock();
        concurrency.saturating_sub(state.held + state.waiting.len())
    }

    /// One worker's share of the pages, once a first split estimated them.
    fn fair_share(&self) -> Option<f64> {
        self.lock().fair_share
    }

    /// The pages the first split estimated for the whole state.
    fn first_estimate(&self) -> Option<f64> {
        self.lock().first_estimate
    }

    /// Keeps the first split's estimate of the state's `pages` and one
    /// worker's share of them (later splits keep them).
    fn set_first_estimate(&self, pages: f64, workers: usize) {
        let mut state = self.lock();
        if state.first_estimate.is_none() {
            state.first_estimate = Some(pages);
            let pages_per_worker = pages / workers.max(1) as f64;
            state.fair_share = (pages_per_worker >= 1.0).then_some(pages_per_worker);
        }
    }

    /// Keeps the pages History's planned windows expect as the state's
    /// first estimate. No fair share: the planned windows are already cut to
    /// shares, and one whose first page looks heavy (a burst on one
    /// instant) is no straggler; idle workers still split what is left.
    fn set_planned_estimate(&self, pages: f64) {
        self.lock().first_estimate = Some(pages);
    }

    /// Ids for `count` new windows.
    fn reserve_ids(&self, count: usize) -> u32 {
        let mut state = self.lock();
        let first = state.next_id;
        state.next_id += count as u32;
        first
    }

    fn push(&self, jobs: Vec<CrawlJob>) {
        self.lock().waiting.extend(jobs);
        self.changed.notify_waiters();
    }

    fn release(&self) {
        let mut state = self.lock();
        state.held = state.held.saturating_sub(1);
        drop(state);
        self.changed.notify_waiters();
    }
}

/// A job considers splitting on its first this many pages, and keeps their
/// StartDates to choose split points from (8 bytes each: 80 KB a window at
/// most). Whether a split pays for the pages it fetches again is
/// `plan::split_window`'s to say; this bounds the sample. At 20, a window of
/// 425 pages whose first 24 were ordinary sessions (a skewed month of
/// 100,000 at `--concurrency 4`, the hot hour at the window's far end) was
/// paged alone for 44 s once the others were done at 3 s; at 50 it is split
/// then, and the month takes 16 s.
const MAX_SAMPLED_PAGES: u32 = 50;
/// How many times the state's first estimate a window must promise, at its
/// page's density, for that density to count as local (see `Worker::split`).
const LOCAL_DENSITY: f64 = 4.0;

/// The largest window id or page number a crawl reaches: far beyond any
/// (a million sessions take 5,000 pages), and far from where `u32`
/// arithmetic would wrap. A window paged this far has a service that never
/// stops handing out tokens; a checkpoint beyond it is not one we wrote.
pub const MAX_COUNTER: u32 = 1 << 24;

/// How often one window may start again from its beginning because the
/// service refused its `NextToken`: more means the service is not keeping
/// its tokens, and paging on would never end.
pub const MAX_TOKEN_RESTARTS: u32 = 3;

/// What one DescribeSessions call returned.
type DescribeSessionsResult = Result<
    aws_sdk_ssm::operation::describe_sessions::DescribeSessionsOutput,
    aws_sdk_ssm::error::SdkError<
        aws_sdk_ssm::operation::describe_sessions::DescribeSessionsError,
        aws_smithy_runtime_api::http::Response,
    >,
>;

/// The wait before retrying a transient failure: full jitter over an
/// exponential ceiling of 50 ms doubling per attempt, at most 5 s.
fn backoff(attempt: u32) -> std::time::Duration {
    let ceiling_ms = (50u64 << attempt.min(10)).min(5_000);
    std::time::Duration::from_millis(fastrand::u64(0..=ceiling_ms))
}

struct Worker {
    client: aws_sdk_ssm::Client,
    options: CrawlOptions,
    concurrency: usize,
    queue: Arc<Queue>,
    pages: mpsc::Sender<Page>,
    stop: CancellationToken,
}

impl Worker {
    async fn run(self) -> Result<(), CrawlError> {
        while let Some(job) = self.queue.take(&self.stop).await {
            let result = self.crawl_job(job).await;
            self.queue.release();
            result?;
        }
        if self.stop.is_cancelled() {
            return Err(CrawlError::Interrupted);
        }
        Ok(())
    }

    async fn crawl_job(&self, job: CrawlJob) -> Result<(), CrawlError> {
        let mut token = job.resume_token.clone();
        let mut seq = job.pages_done;
        // The StartDates this attempt at the job has seen, to choose split
        // points from (a resumed job starts a fresh sample).
        let mut seen = Vec::new();
        let mut pages_here: u32 = 0;
        // Tokens this attempt at the window has been given (their hashes): a
        // token seen again means the service is paging in a circle.
        let mut tokens_seen: HashSet<u64> = HashSet::new();
        let mut token_restarts: u32 = 0;
        let mut restarts_unreported: u32 = 0;
        loop {
            if self.stop.is_cancelled() {
                return Err(CrawlError::Interrupted);
            }
            let (response, attempts) = self.call(&job, &token).await?;
            let observed_at = self.options.clock.now_ms();
            let output = match response {
                Ok(output) => output,
                Err(error) if token.is_some() && error.code() == Some("InvalidNextToken") => {
                    token_restarts += 1;
                    if token_restarts > MAX_TOKEN_RESTARTS {
                        return Err(CrawlError::TokenRestarts {
                            job: job.describe(),
                            restarts: MAX_TOKEN_RESTARTS,
                        });
                    }
                    tracing::warn!(
                        job = %job.describe(),
                        restart = token_restarts,
                        "the service refused the NextToken; crawling this window again from its start"
                    );
                    token = None;
                    seen.clear();
                    tokens_seen.clear();
                    pages_here = 0;
                    restarts_unreported += 1;
                    continue;
                }
                Err(error) => {
                    return Err(CrawlError::Api {
                        job: job.describe(),
                        attempts,
                        message: error_text(&error),
                    })
                }
            };
            let returned = output.sessions().len();
            tracing::trace!(job = %job.describe(), page = seq, returned, more = output.next_token().is_some(), "page");
            // A part is one page, and the dedupe set addresses its rows in 16 bits.
            if returned > self.options.page_size.max(0) as usize {
                return Err(CrawlError::OversizedPage {
                    job: job.describe(),
                    returned,
                    asked: self.options.page_size,
                });
            }
            let mut records = Vec::with_capacity(returned);
            let mut outside_window = 0;
            for session in output.sessions() {
                match SessionRecord::from_sdk(
                    session,
                    &self.options.account_id,
                    &self.options.region,
                    observed_at,
                ) {
                    Ok(record) if job.window.is_none_or(|w| w.contains(record.start_date)) => {
                        records.push(record)
                    }
                    Ok(_) => outside_window += 1,
                    Err(error) => tracing::warn!(
                        error = %printable(&error.to_string()),
                        "skipping a session the service returned"
                    ),
                }
            }
            // An empty token is no token: the window ends here.
            let next_token = output
                .next_token()
                .filter(|t| !t.is_empty())
                .map(str::to_owned);
            if let Some(next) = &next_token {
                if !tokens_seen.insert(token_hash(next)) {
                    return Err(CrawlError::RepeatedToken {
                        job: job.describe(),
                        page: seq,
                    });
                }
            }
            pages_here += 1;
            if pages_here <= MAX_SAMPLED_PAGES {
                seen.extend(records.iter().map(|r| r.start_date));
            }
            let split_into = match (&next_token, job.window) {
                (Some(_), Some(window))
                    if returned >= self.options.page_size as usize
                        && pages_here <= MAX_SAMPLED_PAGES
                        && job.planned_pages.is_none_or(|planned| seq + 1 >= planned) =>
                {
                    self.split(&job, window, &seen, pages_here)
                }
                _ => Vec::new(),
            };
            let done = next_token.is_none() || !split_into.is_empty();
            self.options.progress.sessions(records.len());
            if done {
                // A split window's sub-windows carry its share of the work.
                let share = match job.window {
                    Some(w) if split_into.is_empty() => {
                        let whole = &self.options.crawl_window;
                        (w.end - w.start) as f64 / (whole.end - whole.start).max(1) as f64
                    }
                    _ => 0.0,
                };
                self.options.progress.windows_queued(split_into.len());
                self.options.progress.window_done(share);
            }
            let page = Page {
                job_id: job.id,
                state: job.state,
                seq,
                records,
                next_token: if done { None } else { next_token.clone() },
                outside_window,
                split_into: split_into.clone(),
                token_restarts: std::mem::take(&mut restarts_unreported),
            };
            self.pages
                .send(page)
                .await
                .map_err(|_| CrawlError::ConsumerGone)?;
            if !split_into.is_empty() {
                // Queued only after their page, so the checkpoint that records
                // the split is saved before any of their pages.
                self.queue.push(split_into);
                return Ok(());
            }
            if done {
                return Ok(());
            }
            seq += 1;
            if seq >= MAX_COUNTER {
                // Unique tokens forever: a window no crawl of 30 days needs.
                return Err(CrawlError::EndlessWindow {
                    job: job.describe(),
                    pages: seq,
                });
            }
            token = next_token;
        }
    }

    /// One DescribeSessions call with its retries, every attempt paced: a
    /// throttled attempt is retried when the pacer allows, a transient
    /// failure after a jittered exponential backoff. `max_attempts` bounds the
    /// attempts that fail otherwise than by throttling; throttles get five
    /// times as many, because the pacer slows down on each and a nightly job
    /// should outwait a busy account rather than give up. Returns the last
    /// outcome and the attempts it took. A call in flight is abandoned on
    /// shutdown: its page was never staged, so nothing is lost, and the job
    /// resumes from `token`.
    async fn call(
        &self,
        job: &CrawlJob,
        token: &Option<String>,
    ) -> Result<(DescribeSessionsResult, u32), CrawlError> {
        let max_attempts = self.options.max_attempts;
        let (mut failed, mut throttled) = (0, 0);
        loop {
            let slot = tokio::select! {
                slot = self.options.pacer.start() => slot,
                () = self.stop.cancelled() => return Err(CrawlError::Interrupted),
            };
            // A permit after the pacer's slot, so that a pair waiting for
            // its rate never holds back another's requests.
            let permit = tokio::select! {
                permit = self.options.in_flight.clone().acquire_owned() => permit,
                () = self.stop.cancelled() => {
                    self.options.pacer.finish(slot, Outcome::Failed);
                    return Err(CrawlError::Interrupted);
                }
            };
            let result = tokio::select! {
                r = self.request(job, token.clone()).send() => r,
                () = self.stop.cancelled() => {
                    self.options.pacer.finish(slot, Outcome::Failed);
                    return Err(CrawlError::Interrupted);
                }
            };
            drop(permit);
            let error = match result {
                Ok(output) => {
                    self.options.progress.call(false);
                    self.options.pacer.finish(slot, Outcome::Succeeded);
                    return Ok((Ok(output), failed + throttled + 1));
                }
                Err(error) => error,
            };
            let failure = aws::classify(&error);
            self.options.progress.call(failure == Failure::Throttled);
            tracing::trace!(?failure, failed, throttled, rate = ?self.options.pacer.rate(), "DescribeSessions attempt failed");
            let outcome = match failure {
                Failure::Throttled => Outcome::Throttled,
                Failure::Transient | Failure::Permanent => Outcome::Failed,
            };
            self.options.pacer.finish(slot, outcome);
            match failure {
                Failure::Throttled => throttled += 1,
                Failure::Transient | Failure::Permanent => failed += 1,
            }
            let exhausted = failed >= max_attempts || throttled >= max_attempts * 5;
            if failure == Failure::Permanent || exhausted {
                return Ok((Err(error), failed + throttled));
            }
            if failure == Failure::Transient {
                tokio::select! {
                    () = tokio::time::sleep(backoff(failed)) => {}
                    () = self.stop.cancelled() => return Err(CrawlError::Interrupted),
                }
            }
        }
    }

    /// Sub-windows for the workers waiting for work, or none when nobody
    /// waits or the estimate says paging on costs less than fetching again
    /// the `pages_done` pages this job has fetched (see `split_window`).
    fn split(
        &self,
        job: &CrawlJob,
        window: TimeRange,
        seen: &[i64],
        pages_done: u32,
    ) -> Vec<CrawlJob> {
        let useful = self.options.pacer.useful_concurrency(self.concurrency);
        let hungry = self.queue.hungry(useful);
        let page_size = self.options.page_size as usize;
        // Sorts the dates seen: made once, and only when a split is asked.
        let estimate = std::cell::OnceCell::new();
        let estimated = || *estimate.get_or_init(|| estimated_pages(window, seen, page_size));
        let pieces = if hungry > 0 {
            hungry + 1
        } else {
            // Nobody waits, but a window that promises on its first page
            // many times one worker's share would page alone long after the
            // others end (the hot minutes of a skewed month): split it now,
            // while a split costs one page, not when workers are free and
            // it has paged too far for a split to pay.
            let Some(share) = self.queue.fair_share() else {
                return Vec::new();
            };
            match straggler_pieces(estimated, share, useful, pages_done) {
                Some(pieces) => pieces,
                None => return Vec::new(),
            }
        };
        let allowance = if window == self.options.crawl_window {
            FIRST_WINDOW_ALLOWANCE
        } else {
            0.0
        };
        // A window whose page, were the rest of it as dense, would hold
        // many times what the first split found in the whole state holds a
        // dense stretch that ends inside it (the hot hour of a skewed month,
        // met from its edge): its pieces double in width away from it.
        let dense_is_local = self
            .queue
            .first_estimate()
            .is_some_and(|whole| estimated() > LOCAL_DENSITY * whole);
        let found = Found {
            window,
            seen,
            pages_done,
            dense_is_local,
        };
        let windows = split_window(
            found,
            pieces,
            self.options.min_split_ms,
            page_size,
            allowance,
        );
        if windows.len() >= 2 && self.queue.first_estimate().is_none() {
            self.queue.set_first_estimate(estimated(), useful);
        }
        if windows.len() < 2 {
            tracing::trace!(job = %job.describe(), pages_done, hungry, "not worth splitting");
            return Vec::new();
        }
        let first_id = self.queue.reserve_ids(windows.len());
        tracing::debug!(job = %job.describe(), into = windows.len(), hungry, pages_done, "splitting a heavy window");
        windows
            .into_iter()
            .enumerate()
            .map(|(offset, window)| CrawlJob {
                id: first_id + offset as u32,
                state: job.state,
                window: Some(window),
                resume_token: None,
                pages_done: 0,
                planned_pages: None,
            })
            .collect()
    }

    fn request(
        &self,
        job: &CrawlJob,
        token: Option<String>,
    ) -> aws_sdk_ssm::operation::describe_sessions::builders::DescribeSessionsFluentBuilder {
        let filter = |key: SessionFilterKey, value: String| {
            SessionFilter::builder().key(key).value(value).build()
        };
        let mut filters = Vec::new();
        if let Some(window) = job.window {
            filters.push(filter(SessionFilterKey::InvokedAfter, window.query_after()));
            filters.push(filter(
                SessionFilterKey::InvokedBefore,
                window.query_before(),
            ));
        }
        filters.extend(
            self.options
                .filters
                .iter()
                .map(|f| filter(f.sdk_key(), f.value.clone())),
        );
        self.client
            .describe_sessions()
            .state(match job.state {
                SessionState::Active => aws_sdk_ssm::types::SessionState::Active,
                SessionState::History => aws_sdk_ssm::types::SessionState::History,
            })
            .max_results(self.options.page_size)
            .set_filters(
                (!filters.is_empty()).then(|| filters.into_iter().filter_map(Result::ok).collect()),
            )
            .set_next_token(token)
    }
}
