//! The crawl plan, which follows the data: it starts coarse and splits only
//! where the data proves heavy.
//!
//! - **Active** is one job without `InvokedAfter`/`InvokedBefore`: the list is
//!   small, and a session still open is found whatever its start.
//! - **History** starts as one job over the whole window. An empty account
//!   therefore costs one call per state. When a window's first page comes back
//!   full with a `NextToken` while workers are idle, the crawler splits it
//!   ([`split_window`]) into sub-windows for them, guided by the `StartDate`s
//!   that page returned; the page itself is staged, and its sessions are met
//!   again (and deduplicated) in the sub-windows.
//!
//! Correctness never rests on the service's result order, which AWS does not
//! document: every window is paged to its last token, and each query is
//! widened by a second on both sides (the filters take whole seconds, and the
//! bound semantics are undocumented) while the crawler keeps only the
//! sessions whose `StartDate` lies inside the window, so a session on an edge
//! belongs to exactly one window. Windows narrower than `--slice` are never
//! split, so hundreds of sessions sharing one `StartDate` are paged exactly.

use crate::api::SessionState;
use crate::config::ExportConfig;
use crate::export::crawl::CrawlJob;
use crate::time::TimeRange;

/// The first jobs of a crawl: Active whole, History over the whole window.
pub fn plan_jobs(config: &ExportConfig) -> Vec<CrawlJob> {
    config
        .states
        .iter()
        .enumerate()
        .map(|(id, state)| CrawlJob {
            id: id as u32,
            state: *state,
            window: match state {
                SessionState::Active => None,
                SessionState::History => Some(config.window),
            },
            resume_token: None,
            pages_done: 0,
        })
        .collect()
}

/// Cuts `window` into at most `pieces` contiguous sub-windows, none
/// narrower than `min_width_ms` (so a window narrower than twice that is
/// returned whole). Edges fall on whole seconds, where the observed
/// `StartDate`s (`seen`, any order) and the window's time mix half and half:
/// a dense stretch gets narrow windows, and the part the page did not reach
/// still gets its share, whatever order the service listed sessions in.
pub fn split_window(
    window: TimeRange,
    seen: &[i64],
    pieces: usize,
    min_width_ms: i64,
) -> Vec<TimeRange> {
    let width = window.end - window.start;
    let mut dates: Vec<i64> = seen
        .iter()
        .copied()
        .filter(|t| window.contains(*t))
        .collect();
    dates.sort_unstable();
    if pieces < 2 || width < 2 * min_width_ms.max(1000) {
        return vec![window];
    }
    // Share of the mixed distribution at or before `t`, in [0, 1].
    let mixed = |t: i64| -> f64 {
        let time_share = (t - window.start) as f64 / width as f64;
        if dates.is_empty() {
            return time_share;
        }
        let seen_share = dates.partition_point(|d| *d <= t) as f64 / dates.len() as f64;
        0.5 * seen_share + 0.5 * time_share
    };
    let mut edges = Vec::with_capacity(pieces + 1);
    edges.push(window.start);
    for i in 1..pieces {
        let target = i as f64 / pieces as f64;
        // The first instant where the mixed share reaches the target.
        let (mut low, mut high) = (window.start, window.end);
        while low < high {
            let middle = low + (high - low) / 2;
            if mixed(middle) >= target {
                high = middle;
            } else {
                low = middle + 1;
            }
        }
        let edge = low.div_euclid(1000) * 1000;
        let last = edges.last().copied().unwrap_or(window.start);
        if edge - last >= min_width_ms && window.end - edge >= min_width_ms {
            edges.push(edge);
        }
    }
    edges.push(window.end);
    edges
        .windows(2)
        .map(|pair| TimeRange {
            start: pair[0],
            end: pair[1],
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;
    const MINUTE: i64 = 60_000;

    fn assert_covers(window: TimeRange, pieces: &[TimeRange], min_width: i64) {
        assert_eq!(pieces.first().map(|p| p.start), Some(window.start));
        assert_eq!(pieces.last().map(|p| p.end), Some(window.end));
        assert!(pieces.windows(2).all(|w| w[0].end == w[1].start));
        assert!(
            pieces.len() == 1 || pieces.iter().all(|p| p.end - p.start >= min_width),
            "{pieces:?}"
        );
    }

    #[test]
    fn an_unguided_split_is_even_and_covers_the_window() {
        let window = TimeRange {
            start: 5 * HOUR + 123,
            end: 5 * HOUR + 123 + 30 * 24 * HOUR,
        };
        let pieces = split_window(window, &[], 15, MINUTE);
        assert_eq!(pieces.len(), 15);
        assert_covers(window, &pieces, MINUTE);
        assert!(pieces[1..].iter().all(|p| p.start % 1000 == 0));
    }

    #[test]
    fn dense_stretches_get_narrow_windows_whatever_the_order_seen() {
        let window = TimeRange {
            start: 0,
            end: 30 * 24 * HOUR,
        };
        // A page of 200 sessions all inside one hour, listed in any order.
        let hot = 10 * 24 * HOUR;
        let mut seen: Vec<i64> = (0..200).map(|i| hot + i * 18_000).collect();
        seen.reverse();
        let pieces = split_window(window, &seen, 16, MINUTE);
        assert_covers(window, &pieces, MINUTE);
        let in_hot_hour = pieces
            .iter()
            .filter(|p| p.start >= hot && p.end <= hot + HOUR)
            .count();
        assert!(in_hot_hour >= 5, "{pieces:?}");
    }

    #[test]
    fn a_burst_on_one_instant_is_never_cut_and_narrow_windows_stay_whole() {
        let window = TimeRange {
            start: 0,
            end: 2 * HOUR,
        };
        let burst = vec![HOUR + 500; 200];
        let pieces = split_window(window, &burst, 8, MINUTE);
        assert_covers(window, &pieces, MINUTE);
        assert_eq!(
            pieces.iter().filter(|p| p.contains(HOUR + 500)).count(),
            1,
            "one window holds the whole burst"
        );
        let narrow = TimeRange {
            start: 0,
            end: MINUTE + 59_000,
        };
        assert_eq!(split_window(narrow, &burst, 8, MINUTE), vec![narrow]);
        assert_eq!(split_window(window, &burst, 1, MINUTE), vec![window]);
    }
}
