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

use serde::{Deserialize, Serialize};

/// A half-open span of time in epoch milliseconds, UTC: `[start, end)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct TimeRange {
    pub start: i64,
    pub end: i64,
}

impl TimeRange {
    pub fn contains(&self, t: i64) -> bool {
        self.start <= t && t < self.end
    }

    /// The `InvokedAfter` filter value: a whole second at least one second
    /// before `start`.
    pub fn query_after(&self) -> String {
        format_filter_time(self.start.div_euclid(1000) * 1000 - 1000)
    }

    /// The `InvokedBefore` filter value: a whole second at least one second
    /// after `end`.
    pub fn query_before(&self) -> String {
        format_filter_time((self.end + 999).div_euclid(1000) * 1000 + 1000)
    }
}

/// `2026-11-01T06:00:00Z to 2026-11-01T12:00:00Z`, for people reading
/// checkpoints and messages.
impl std::fmt::Display for TimeRange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} to {}",
            format_filter_time(self.start),
            format_filter_time(self.end)
        )
    }
}

/// The only time form the service documents for filters.
pub fn format_filter_time(millis: i64) -> String {
    chrono::DateTime::from_timestamp_millis(millis)
        .unwrap_or_default()
        .format("%Y-%m-%dT%H:%M:%SZ")
        .to_string()
}

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

    #[test]
    fn queries_are_widened_to_whole_seconds() {
        let slice = TimeRange {
            start: 1_700_000_000_500,
            end: 1_700_000_100_000,
        };
        assert_eq!(slice.query_after(), "2023-11-14T22:13:19Z");
        assert_eq!(slice.query_before(), "2023-11-14T22:15:01Z");
        assert!(slice.contains(slice.start) && !slice.contains(slice.end));
        assert_eq!(
            slice.to_string(),
            "2023-11-14T22:13:20Z to 2023-11-14T22:15:00Z"
        );
    }
}
