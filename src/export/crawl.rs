//! The crawler: pages DescribeSessions through every (state, slice) job with
//! a fixed pool of workers, so requests in flight never exceed
//! `--concurrency` however many slices there are, and hands each page to the
//! stager through a bounded channel (backpressure, not buffering).
//!
//! A job is followed to its last `NextToken`, across short and empty pages.
//! Jobs come from a shared queue that workers pull from, so a later version
//! can push sub-slices of a heavy window while the crawl runs. The first
//! failure, or the shutdown signal, stops every worker at its next call.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};

use aws_sdk_ssm::error::ProvideErrorMetadata;
use aws_sdk_ssm::types::{SessionFilter, SessionFilterKey};
use tokio::sync::mpsc;
use tokio::task::JoinSet;

use crate::api::SessionState;
use crate::config::UserFilter;
use crate::dataset::record::SessionRecord;
use crate::shutdown::CancellationToken;
use crate::text::error_text;
use crate::time::{format_filter_time, Clock, TimeRange};

/// One slice of one state, and where to continue it.
#[derive(Debug, Clone)]
pub struct CrawlJob {
    /// Position of the job in the plan; stable across reruns of one plan.
    pub id: u32,
    pub state: SessionState,
    pub slice: TimeRange,
    /// Continue from this token instead of the slice's first page.
    pub resume_token: Option<String>,
    /// Pages of this job already fetched (their sequence numbers continue).
    pub pages_done: u32,
}

/// One page of one job, converted and trimmed to the job's slice.
#[derive(Debug)]
pub struct Page {
    pub job_id: u32,
    pub state: SessionState,
    /// 0-based sequence number of the page within its job.
    pub seq: u32,
    pub records: Vec<SessionRecord>,
    /// The token for the next page; None when the job is complete.
    pub next_token: Option<String>,
    /// Sessions the service returned outside the slice (a neighbour's).
    pub outside_slice: usize,
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
}

/// Why a crawl stopped before every job was complete.
#[derive(Debug, thiserror::Error)]
pub enum CrawlError {
    #[error("DescribeSessions failed for {state} sessions started {from} to {to} after the SDK's retries: {message}")]
    Api {
        state: &'static str,
        from: String,
        to: String,
        message: String,
    },
    #[error("{0} failed unexpectedly; this is a bug in ssm-audit, please report it")]
    Panicked(String),
    #[error("the crawl was stopped by a shutdown signal")]
    Interrupted,
    #[error("the page consumer stopped before the crawl ended")]
    ConsumerGone,
}

/// Crawls every job in `jobs`, sending pages to `pages`. Returns once every
/// job is complete, or with the first error after all workers have stopped.
pub async fn crawl(
    client: aws_sdk_ssm::Client,
    jobs: Vec<CrawlJob>,
    options: CrawlOptions,
    pages: mpsc::Sender<Page>,
    shutdown: CancellationToken,
) -> Result<(), CrawlError> {
    let queue = Arc::new(Mutex::new(VecDeque::from(jobs)));
    // Cancelled by the caller, or here once one worker has failed.
    let stop = shutdown.child_token();
    let mut workers = JoinSet::new();
    for _ in 0..options.concurrency.max(1) {
        let worker = Worker {
            client: client.clone(),
            options: options.clone(),
            queue: queue.clone(),
            pages: pages.clone(),
            stop: stop.clone(),
        };
        workers.spawn(worker.run());
    }
    drop(pages);
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

struct Worker {
    client: aws_sdk_ssm::Client,
    options: CrawlOptions,
    queue: Arc<Mutex<VecDeque<CrawlJob>>>,
    pages: mpsc::Sender<Page>,
    stop: CancellationToken,
}

impl Worker {
    fn should_stop(&self) -> Result<(), CrawlError> {
        if self.stop.is_cancelled() {
            return Err(CrawlError::Interrupted);
        }
        Ok(())
    }

    fn next_job(&self) -> Option<CrawlJob> {
        self.queue
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .pop_front()
    }

    async fn run(self) -> Result<(), CrawlError> {
        while let Some(job) = self.next_job() {
            self.crawl_job(job).await?;
        }
        Ok(())
    }

    async fn crawl_job(&self, job: CrawlJob) -> Result<(), CrawlError> {
        let mut token = job.resume_token.clone();
        let mut seq = job.pages_done;
        loop {
            self.should_stop()?;
            let request = self.request(&job, token.clone());
            // A call in flight is abandoned on shutdown: its page was never
            // staged, so nothing is lost, and the job resumes from `token`.
            let response = tokio::select! {
                r = request.send() => r,
                () = self.stop.cancelled() => return Err(CrawlError::Interrupted),
            };
            let observed_at = self.options.clock.now_ms();
            let output = match response {
                Ok(output) => output,
                Err(error) if token.is_some() && error.code() == Some("InvalidNextToken") => {
                    tracing::warn!(
                        state = job.state.as_str(),
                        slice_start = %format_filter_time(job.slice.start),
                        "the service no longer accepts the resume token; crawling this slice again from its start"
                    );
                    token = None;
                    continue;
                }
                Err(error) => {
                    return Err(CrawlError::Api {
                        state: job.state.as_str(),
                        from: format_filter_time(job.slice.start),
                        to: format_filter_time(job.slice.end),
                        message: error_text(&error),
                    })
                }
            };
            let mut records = Vec::new();
            let mut outside_slice = 0;
            for session in output.sessions() {
                match SessionRecord::from_sdk(
                    session,
                    &self.options.account_id,
                    &self.options.region,
                    observed_at,
                ) {
                    Ok(record) if job.slice.contains(record.start_date) => records.push(record),
                    Ok(_) => outside_slice += 1,
                    Err(error) => tracing::warn!(%error, "skipping a session the service returned"),
                }
            }
            let next_token = output.next_token().map(str::to_owned);
            let done = next_token.is_none();
            let page = Page {
                job_id: job.id,
                state: job.state,
                seq,
                records,
                next_token: next_token.clone(),
                outside_slice,
            };
            self.pages
                .send(page)
                .await
                .map_err(|_| CrawlError::ConsumerGone)?;
            if done {
                return Ok(());
            }
            seq += 1;
            token = next_token;
        }
    }

    fn request(
        &self,
        job: &CrawlJob,
        token: Option<String>,
    ) -> aws_sdk_ssm::operation::describe_sessions::builders::DescribeSessionsFluentBuilder {
        let filter = |key: SessionFilterKey, value: String| {
            SessionFilter::builder().key(key).value(value).build()
        };
        let mut filters = vec![
            filter(SessionFilterKey::InvokedAfter, job.slice.query_after()),
            filter(SessionFilterKey::InvokedBefore, job.slice.query_before()),
        ];
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
            .set_filters(Some(filters.into_iter().filter_map(Result::ok).collect()))
            .set_next_token(token)
    }
}
