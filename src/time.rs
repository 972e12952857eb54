//! Time as the job sees it: [`TimeRange`], the half-open spans that windows
//! and slices are made of, the one form the service takes for filter times,
//! and [`Clock`], the run's clock, which tests pin so that nothing depends on
//! the hour a test runs at.

use chrono::{DateTime, Utc};
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

/// The instant of epoch milliseconds, or None outside chrono's calendar
/// (about 262,000 years either side of 1970).
pub fn utc(millis: i64) -> Option<DateTime<Utc>> {
    DateTime::from_timestamp_millis(millis)
}

/// The only time form the service documents for filters. A value outside
/// the calendar (which validated windows never hold) is printed as its raw
/// milliseconds rather than as a wrong date.
pub fn format_filter_time(millis: i64) -> String {
    match utc(millis) {
        Some(t) => t.format("%Y-%m-%dT%H:%M:%SZ").to_string(),
        None => format!("{millis} ms since 1970 (outside the calendar)"),
    }
}

/// The run's clock: the system clock, or in tests the system clock shifted
/// so that the run starts at a pinned instant (`--clock-start`, hidden). It
/// keeps advancing in real time, so leases and timeouts still see time pass.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Clock {
    reading: Reading,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Reading {
    /// The system clock plus this many milliseconds.
    Shifted(i64),
    /// Always this instant (unit tests of pure functions).
    Fixed(i64),
}

impl Default for Clock {
    fn default() -> Clock {
        Clock::system()
    }
}

impl Clock {
    pub fn system() -> Clock {
        Clock {
            reading: Reading::Shifted(0),
        }
    }

    /// A clock that reads `start_ms` now and advances from there.
    pub fn starting_at(start_ms: i64) -> Clock {
        Clock {
            reading: Reading::Shifted(start_ms - Utc::now().timestamp_millis()),
        }
    }

    /// A clock that never moves, for unit tests.
    pub fn fixed(at_ms: i64) -> Clock {
        Clock {
            reading: Reading::Fixed(at_ms),
        }
    }

    pub fn now_ms(&self) -> i64 {
        match self.reading {
            Reading::Shifted(offset) => Utc::now().timestamp_millis() + offset,
            Reading::Fixed(at) => at,
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        utc(self.now_ms()).unwrap_or_else(Utc::now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn times_outside_the_calendar_are_never_shown_as_1970() {
        let text = format_filter_time(i64::MAX);
        assert!(!text.contains("1970-01-01"), "{text}");
        assert!(text.contains(&i64::MAX.to_string()), "{text}");
    }

    #[test]
    fn a_pinned_clock_starts_where_it_is_told_and_advances() {
        let clock = Clock::starting_at(1_000_000);
        let first = clock.now_ms();
        assert!((1_000_000..1_060_000).contains(&first), "{first}");
        assert!(clock.now_ms() >= first);
        assert!((Clock::system().now_ms() - Utc::now().timestamp_millis()).abs() < 60_000);
        assert_eq!(Clock::fixed(5).now_ms(), 5);
    }
}
