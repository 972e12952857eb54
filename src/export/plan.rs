//! The crawl window and its slices: how `[since, until)` is cut into
//! `InvokedAfter`/`InvokedBefore` queries so that no session is lost or
//! doubled whichever way the service reads a bound.
//!
//! Slice edges are multiples of the slice width from the Unix epoch, so every
//! night cuts the same edges and a 6-hour slice never straddles a UTC day.
//! Each query is widened by a second on both sides (the filters take whole
//! seconds, and the service's bound semantics are undocumented); the crawler
//! then keeps only the sessions whose `StartDate` lies inside the slice, so a
//! session on an edge belongs to exactly one slice.

use crate::config::ExportConfig;
use crate::export::crawl::CrawlJob;
use crate::time::TimeRange;

/// Cuts `window` into slices whose edges are multiples of `width_ms`.
pub fn plan_slices(window: TimeRange, width_ms: i64) -> Vec<TimeRange> {
    let mut slices = Vec::new();
    let mut start = window.start;
    while start < window.end {
        let next_edge = (start.div_euclid(width_ms) + 1) * width_ms;
        let end = next_edge.min(window.end);
        slices.push(TimeRange { start, end });
        start = end;
    }
    slices
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

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;

    #[test]
    fn slices_cover_the_window_on_aligned_edges() {
        let window = TimeRange {
            start: 5 * HOUR + 123,
            end: 30 * HOUR,
        };
        let slices = plan_slices(window, 6 * HOUR);
        assert_eq!(slices.first().map(|s| s.start), Some(window.start));
        assert_eq!(slices.last().map(|s| s.end), Some(window.end));
        assert!(slices.windows(2).all(|w| w[0].end == w[1].start));
        assert!(slices[1..].iter().all(|s| s.start % (6 * HOUR) == 0));
        assert_eq!(slices.len(), 5);
    }
}
