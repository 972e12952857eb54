//! The crawl plan, which follows the data: it starts coarse and splits only
//! where the data proves heavy.
//!
//! - **Active** is one job without `InvokedAfter`/`InvokedBefore`: the list is
//!   small, and a session still open is found whatever its start.
//! - **History** starts as one job over the whole window. An empty account
//!   therefore costs one call per state. When a window's page comes back full
//!   with a `NextToken` while workers are idle, the crawler may split it
//!   ([`split_window`]) into sub-windows for them, of about equal weight as
//!   estimated from the `StartDate`s that page returned; the page itself is
//!   staged, and its sessions are met again (and deduplicated) in the
//!   sub-windows. The first split also sets one worker's fair share of the
//!   pages; a window whose first page promises several shares is split
//!   even with no worker idle ([`straggler_pieces`]), so the hot minutes of
//!   a skewed month do not page alone at the end.
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
use crate::time::TimeRange;

/// One window of one state, and where to continue it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CrawlJob {
    /// Unique within a crawl; a split's sub-windows get new ids.
    pub id: u32,
    pub state: SessionState,
    /// The `StartDate`s this job owns; None: the whole list, unfiltered
    /// (Active).
    pub window: Option<TimeRange>,
    /// Continue from this token instead of the window's first page.
    pub resume_token: Option<String>,
    /// Pages of this job already fetched (their sequence numbers continue).
    pub pages_done: u32,
}

impl CrawlJob {
    /// How messages name the job.
    pub fn describe(&self) -> String {
        match self.window {
            Some(window) => format!("{} sessions started {window}", self.state.as_str()),
            None => format!("all {} sessions", self.state.as_str()),
        }
    }
}

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

/// The calls a state's crawl may spend beyond the pages its sessions fill:
/// 15% of them, plus [`FIRST_WINDOW_ALLOWANCE`] for its first window. A
/// split spends them: the sub-windows fetch again the pages the window has
/// fetched, and each ends on a part-full page (half a page on average).
pub const SPARE_SHARE: f64 = 0.15;
/// The fixed calls a state's first window may spend on finding where its
/// data is (see [`SPARE_SHARE`]).
pub const FIRST_WINDOW_ALLOWANCE: f64 = 4.0;

/// What a window's pages have shown, for [`split_window`].
#[derive(Debug, Clone, Copy)]
pub struct Found<'a> {
    pub window: TimeRange,
    /// The `StartDate`s its pages returned, in any order.
    pub seen: &'a [i64],
    /// The pages it has fetched (a split fetches them again).
    pub pages_done: u32,
    /// Whether the seen density is known to be local: the whole state
    /// holds far less than the window would at that density.
    pub dense_is_local: bool,
}

/// Cuts a heavy `window` into at most `pieces` contiguous sub-windows of
/// about equal estimated weight, none narrower than `min_width_ms` (so a
/// window narrower than twice that is returned whole); edges fall on whole
/// seconds.
///
/// The estimate comes from the `StartDate`s the window's pages returned
/// (`seen`, in any order): the stretch they span holds them, and the
/// stretches the pages did not reach are assumed as dense as the seen edge
/// nearest to them. A page listed in time order therefore yields an even
/// split by time (the rest lies beyond its edge), one in no order yields
/// quantiles of a sample, and a burst or a hot hour at the edge yields
/// narrow windows there.
///
/// How many pieces the calls pay for: `pages_done` pages were fetched and
/// will be fetched again, and each piece's last page is part-full, so the
/// window's spare calls ([`SPARE_SHARE`] of its estimated pages, plus
/// `allowance`) buy about two pieces each after the pages thrown away, and
/// no piece is planned with fewer than `1 / (2 x SPARE_SHARE)` pages (its
/// last page alone would cost more than its share). A window with fewer
/// than two pages left is never split: it would not end sooner. A sample
/// that reaches across the window says nothing of how much remains: it is cut into `pieces` on its first page only, unless its
/// dates came in time order (then they are the window's edge).
///
/// When the density is known to be local ([`Found::dense_is_local`]), a
/// page in time order is the edge of a dense stretch however evenly dense
/// the page itself is, and the pieces double away from it (see
/// [`hot_edge_pieces`]) towards the window's start when the page leaves a
/// slice of it unseen: the right side for a page listed newest first; for
/// one listed oldest first after a gap, the pieces cover the gap and the
/// dense rest stays one piece, split again on its own first page (leading
/// into the longer stretch instead measured 143 to 149 calls at 64 on a
/// skewed month listed oldest first, against 126 to 128).
pub fn split_window(
    found: Found<'_>,
    pieces: usize,
    min_width_ms: i64,
    page_size: usize,
    allowance: f64,
) -> Vec<TimeRange> {
    let Found {
        window,
        seen,
        pages_done,
        dense_is_local,
    } = found;
    let width = window.end - window.start;
    if pieces < 2 || width < 2 * min_width_ms.max(1000) {
        return vec![window];
    }
    let dates = in_window_sorted(window, seen);
    let weight = Weight::estimate(window, &dates);
    let unseen_share = weight.unseen_span() as f64 / width as f64;
    // Dates listed in time order are the window's edge, however much of it
    // they span: what is left is what lies beyond them.
    let in_time_order = seen.is_sorted() || seen.iter().rev().is_sorted();
    let pieces = if pages_done <= 1 && unseen_share < 0.1 && !in_time_order {
        // A first page in no order from across the window: a sample, cut at
        // its quantiles.
        pieces
    } else {
        let pages = weight.total() / page_size.max(1) as f64;
        let done = f64::from(pages_done);
        let spare = SPARE_SHARE * pages + allowance - done;
        // Each piece ends on a part-full page, half a page on average: a
        // piece of fewer than 1 / (2 x SPARE_SHARE) pages spends more than
        // its spare share on it, whatever the allowance.
        let affordable = (2.0 * spare)
            .floor()
            .min(((pages - done) * 2.0 * SPARE_SHARE).floor());
        if pages - done < 2.0 || affordable < 2.0 {
            return vec![window];
        }
        (affordable as usize).min(pieces)
    };
    if pages_done >= 2 || in_time_order {
        if let Some(edges) = hot_edge_pieces(
            window,
            &weight,
            pieces,
            min_width_ms,
            page_size,
            dense_is_local,
        ) {
            return to_ranges(&edges);
        }
    }
    let mut edges = Vec::with_capacity(pieces + 1);
    edges.push(window.start);
    for i in 1..pieces {
        let target = weight.total() * i as f64 / pieces as f64;
        // The first instant where the weight before it reaches the target.
        let (mut low, mut high) = (window.start, window.end);
        while low < high {
            let middle = low + (high - low) / 2;
            if weight.before(middle) >= target {
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
    to_ranges(&edges)
}

/// The pages `window` holds, as estimated from the `StartDate`s its pages
/// returned (`seen`, in any order; see [`split_window`]).
pub fn estimated_pages(window: TimeRange, seen: &[i64], page_size: usize) -> f64 {
    let dates = in_window_sorted(window, seen);
    Weight::estimate(window, &dates).total() / page_size.max(1) as f64
}

/// The `StartDate`s of `seen` that lie in `window`, sorted.
fn in_window_sorted(window: TimeRange, seen: &[i64]) -> Vec<i64> {
    let mut dates: Vec<i64> = seen
        .iter()
        .copied()
        .filter(|t| window.contains(*t))
        .collect();
    dates.sort_unstable();
    dates
}

/// A window whose first page promises this many fair shares of pages is
/// split even with no worker waiting (see [`straggler_pieces`]).
pub const STRAGGLER_SHARES: f64 = 3.0;
/// Into at most this many pieces: one page shows where a window begins to
/// be dense, not how far it stays so, and pieces that come back nearly
/// empty cost calls (as many pieces as shares went over the call budget at
/// concurrency 64).
pub const STRAGGLER_PIECES: usize = 4;

/// How many pieces to cut a window into when no worker waits: with
/// `estimated()` pages after its first page, it would page alone long after
/// the others end (the hot minutes of a skewed month) if it promises
/// [`STRAGGLER_SHARES`] times one worker's `share`. Now a split costs one
/// page; by the time workers are free it has paged too far for a split to
/// pay. None when not worth it, after the first page, or when the rate
/// keeps fewer than two calls busy (`useful`). The estimate (a sort of the
/// dates seen) is made only on a first page: the rule is asked on each of a
/// window's first pages while no worker waits.
pub fn straggler_pieces(
    estimated: impl FnOnce() -> f64,
    share: f64,
    useful: usize,
    pages_done: u32,
) -> Option<usize> {
    if pages_done != 1 {
        return None;
    }
    let shares = estimated() / share;
    let pieces = (shares as usize).min(STRAGGLER_PIECES).min(useful);
    (shares >= STRAGGLER_SHARES && pieces >= 2).then_some(pieces)
}

fn to_ranges(edges: &[i64]) -> Vec<TimeRange> {
    edges
        .windows(2)
        .map(|pair| TimeRange {
            start: pair[0],
            end: pair[1],
        })
        .collect()
}

/// A later page (or a first page listed in time order) that reached a
/// stretch much denser than the pages before it (a hot hour behind
/// ordinary sessions), or any page in time order whose density is known to
/// be local (`dense_is_local`), says the stretch starts there,
/// not how far it goes. Cutting the unseen rest at equal estimated weight
/// would assume it all that dense and cut it into pieces of a few sessions
/// each. Pieces instead double in width away from the dense edge: the first
/// holds [`PAGES_AT_THE_EDGE`] pages at the edge's density, and a piece that proves
/// heavy is split again on its own first page. None when no such edge.
/// Estimated pages the piece next to a dense edge holds (see
/// [`hot_edge_pieces`]); measured on a skewed month at concurrency 16 and 64,
/// two gave the fewest calls at 20,000 sessions and six the fastest crawl at
/// 100,000.
const PAGES_AT_THE_EDGE: f64 = 4.0;

fn hot_edge_pieces(
    window: TimeRange,
    weight: &Weight<'_>,
    pieces: usize,
    min_width_ms: i64,
    page_size: usize,
    dense_is_local: bool,
) -> Option<Vec<i64>> {
    let (first, last) = (weight.first_seen(), weight.last_seen());
    let seen_span = (last - first).max(1000) as f64;
    let average = weight.dates.len() as f64 / seen_span;
    // Which edge is dense with an unseen stretch beyond it, and its density.
    let (edge, density, backwards) = if first - window.start >= min_width_ms
        && (dense_is_local || weight.density_before > 4.0 * average)
    {
        (first, weight.density_before, true)
    } else if window.end - last >= min_width_ms
        && (dense_is_local || weight.density_after > 4.0 * average)
    {
        (last, weight.density_after, false)
    } else {
        return None;
    };
    let mut width = ((PAGES_AT_THE_EDGE * page_size as f64 / density) as i64)
        .max(min_width_ms)
        .max(1000);
    let mut cuts = vec![edge.div_euclid(1000) * 1000];
    while cuts.len() < pieces {
        let from = *cuts.last()?;
        let next = if backwards {
            from - width
        } else {
            from + width
        };
        let next = next.div_euclid(1000) * 1000;
        let room = if backwards {
            next - window.start
        } else {
            window.end - next
        };
        if room < min_width_ms {
            break;
        }
        cuts.push(next);
        width = width.saturating_mul(2);
    }
    // The seen stretch stays one piece (fetched again, as any split does).
    let mut edges = vec![window.start];
    let inner: Vec<i64> = if backwards {
        cuts.into_iter().rev().collect()
    } else {
        cuts
    };
    for cut in inner {
        let previous = *edges.last()?;
        if cut - previous >= min_width_ms && window.end - cut >= min_width_ms {
            edges.push(cut);
        }
    }
    edges.push(window.end);
    (edges.len() > 2).then_some(edges)
}

/// The estimated number of sessions in a window, as a function of time.
struct Weight<'a> {
    window: TimeRange,
    /// The seen `StartDate`s, sorted; the span they cover holds them.
    dates: &'a [i64],
    /// Sessions per millisecond assumed before the first and after the last
    /// seen date.
    density_before: f64,
    density_after: f64,
}

impl<'a> Weight<'a> {
    fn estimate(window: TimeRange, dates: &'a [i64]) -> Weight<'a> {
        let (density_before, density_after) = match (dates.first(), dates.last()) {
            (Some(&first), Some(&last)) => {
                // The density of the dates nearest each edge: a tenth of a
                // page's worth at most, so that a dense stretch just reached
                // is not averaged away by the pages before it.
                let edge = (dates.len() / 10).clamp(1, 20).min(dates.len());
                let span_before = (dates[edge - 1] - first).max(1000);
                let span_after = (last - dates[dates.len() - edge]).max(1000);
                (
                    edge as f64 / span_before as f64,
                    edge as f64 / span_after as f64,
                )
            }
            // Nothing seen: weight by time alone.
            _ => (1.0, 1.0),
        };
        Weight {
            window,
            dates,
            density_before,
            density_after,
        }
    }

    fn first_seen(&self) -> i64 {
        self.dates.first().copied().unwrap_or(self.window.end)
    }

    fn last_seen(&self) -> i64 {
        self.dates.last().copied().unwrap_or(self.window.end)
    }

    fn unseen_span(&self) -> i64 {
        (self.first_seen() - self.window.start) + (self.window.end - self.last_seen())
    }

    /// Estimated sessions that started before `t`.
    fn before(&self, t: i64) -> f64 {
        let first = self.first_seen();
        let last = self.last_seen();
        let ahead = (t.min(first) - self.window.start) as f64 * self.density_before;
        let seen = self.dates.partition_point(|d| *d < t) as f64;
        let after = (t - last).max(0) as f64 * self.density_after;
        ahead + seen + after
    }

    fn total(&self) -> f64 {
        self.before(self.window.end)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HOUR: i64 = 3_600_000;
    const MINUTE: i64 = 60_000;

    fn found(window: TimeRange, seen: &[i64], pages_done: u32, dense_is_local: bool) -> Found<'_> {
        Found {
            window,
            seen,
            pages_done,
            dense_is_local,
        }
    }

    fn assert_covers(window: TimeRange, pieces: &[TimeRange], min_width: i64) {
        assert_eq!(pieces.first().map(|p| p.start), Some(window.start));
        assert_eq!(pieces.last().map(|p| p.end), Some(window.end));
        assert!(pieces.windows(2).all(|w| w[0].end == w[1].start));
        assert!(
            pieces.len() == 1 || pieces.iter().all(|p| p.end - p.start >= min_width),
            "{pieces:?}"
        );
    }

    fn spread(pieces: &[TimeRange]) -> (i64, i64) {
        let widths = pieces.iter().map(|p| p.end - p.start);
        (widths.clone().min().unwrap_or(0), widths.max().unwrap_or(0))
    }

    #[test]
    fn a_page_in_time_order_gives_an_even_split_by_time() {
        let window = TimeRange {
            start: 5 * HOUR + 123,
            end: 5 * HOUR + 123 + 30 * 24 * HOUR,
        };
        // 20,000 sessions spread evenly: the newest 200 span the last 7.2 h,
        // and the oldest 200 the first 7.2 h; either order says the same.
        let step = 30 * 24 * HOUR / 20_000;
        for seen in [
            (0..200)
                .map(|i| window.end - 1 - i * step)
                .collect::<Vec<_>>(),
            (0..200).map(|i| window.start + i * step).collect(),
        ] {
            let pieces = split_window(found(window, &seen, 1, false), 16, MINUTE, 200, 0.0);
            assert_eq!(pieces.len(), 16, "100 estimated pages fill 16 workers");
            assert_covers(window, &pieces, MINUTE);
            let (narrowest, widest) = spread(&pieces);
            assert!(widest < 2 * narrowest, "{pieces:?}");
        }
        let nothing_seen = split_window(found(window, &[], 1, false), 4, MINUTE, 200, 0.0);
        assert_eq!(nothing_seen.len(), 4);
    }

    #[test]
    fn a_window_is_split_only_for_enough_work_and_never_into_tiny_pieces() {
        let window = TimeRange {
            start: 0,
            end: 30 * 24 * HOUR,
        };
        // The newest 200 of about 600 sessions span the last 10 days: three
        // pages do not pay for a split.
        let step = 10 * 24 * HOUR / 200;
        let seen: Vec<i64> = (0..200).map(|i| window.end - 1 - i * step).collect();
        assert_eq!(
            split_window(found(window, &seen, 1, false), 16, MINUTE, 200, 0.0),
            vec![window]
        );
        // Nor does a state's first window's allowance: a piece must hold
        // pages enough for its part-full last page to stay within the
        // spare share (about 3.3), and two pages are left.
        assert_eq!(
            split_window(
                found(window, &seen, 1, false),
                16,
                MINUTE,
                200,
                FIRST_WINDOW_ALLOWANCE
            ),
            vec![window]
        );
        // About 3,000: fifteen pages; a sub-window's spare calls (15%) pay
        // for two pieces, a first window's for ten, but the fourteen pages
        // left fill only four that pay their own last pages.
        let step = 2 * 24 * HOUR / 200;
        let seen: Vec<i64> = (0..200).map(|i| window.end - 1 - i * step).collect();
        let pieces = split_window(found(window, &seen, 1, false), 16, MINUTE, 200, 0.0);
        assert_eq!(pieces.len(), 2, "{pieces:?}");
        assert_covers(window, &pieces, MINUTE);
        let pieces = split_window(
            found(window, &seen, 1, false),
            16,
            MINUTE,
            200,
            FIRST_WINDOW_ALLOWANCE,
        );
        assert_eq!(pieces.len(), 4, "{pieces:?}");
        assert_covers(window, &pieces, MINUTE);
    }

    #[test]
    fn a_window_found_heavy_after_some_pages_is_split_if_that_pays() {
        let window = TimeRange {
            start: 0,
            end: 10 * 24 * HOUR,
        };
        // Three pages in: 400 sessions over the newest 5 days, then 200 in
        // ten minutes: the hour being reached is dense, the rest unknown.
        let mut seen: Vec<i64> = (0..400).map(|i| window.end - 1 - i * 1_080_000).collect();
        let hot = window.end - 5 * 24 * HOUR;
        seen.extend((0..200).map(|i| hot - i * 3_000));
        let pieces = split_window(found(window, &seen, 3, false), 16, MINUTE, 200, 0.0);
        assert_covers(window, &pieces, MINUTE);
        assert_hot_edge_pieces(&pieces, hot - 199 * 3_000, 4 * 200 * 3_000);
        // The same pages spread evenly promise too little for the waste.
        let even: Vec<i64> = (0..600).map(|i| window.end - 1 - i * 1_000_000).collect();
        assert_eq!(
            split_window(found(window, &even, 3, false), 16, MINUTE, 200, 0.0),
            vec![window]
        );
        // A page in no order from across the whole window is a sample, cut
        // on its first page only; the same dates in time order are the
        // window's edge, and say that little is left.
        let mut across: Vec<i64> = (0..200).map(|i| i * (10 * 24 * HOUR / 200)).collect();
        assert_eq!(
            split_window(found(window, &across, 1, false), 8, MINUTE, 200, 0.0),
            vec![window]
        );
        fastrand::Rng::with_seed(3).shuffle(&mut across);
        assert_eq!(
            split_window(found(window, &across, 1, false), 8, MINUTE, 200, 0.0).len(),
            8
        );
        assert_eq!(
            split_window(found(window, &across, 2, false), 8, MINUTE, 200, 0.0),
            vec![window]
        );
    }

    #[test]
    fn a_sample_in_no_order_puts_narrow_windows_where_it_is_dense() {
        let window = TimeRange {
            start: 0,
            end: 30 * 24 * HOUR,
        };
        // A page in no particular order: three quarters inside one hour.
        let hot = 10 * 24 * HOUR;
        let mut seen: Vec<i64> = (0..150).map(|i| hot + i * 24_000).collect();
        seen.extend((0..50).map(|i| i * (30 * 24 * HOUR / 50) + 7));
        fastrand::Rng::with_seed(1).shuffle(&mut seen);
        let pieces = split_window(found(window, &seen, 1, false), 16, MINUTE, 200, 0.0);
        assert_covers(window, &pieces, MINUTE);
        let in_hot_hour = pieces
            .iter()
            .filter(|p| p.start >= hot && p.end <= hot + HOUR)
            .count();
        assert!(in_hot_hour >= 8, "{pieces:?}");
    }

    /// `StartDate`s listed newest first: `ordinary` sessions `spacing` ms
    /// apart back from the window's end, then `hot` ones `hot_spacing` ms
    /// apart back from `hot_end`.
    fn ordinary_then_hot(
        window: TimeRange,
        (ordinary, spacing): (i64, i64),
        hot_end: i64,
        (hot, hot_spacing): (i64, i64),
    ) -> Vec<i64> {
        let mut seen: Vec<i64> = (0..ordinary)
            .map(|i| window.end - 1 - i * spacing)
            .collect();
        seen.extend((0..hot).map(|i| hot_end - i * hot_spacing));
        seen
    }

    #[test]
    fn a_hot_hour_behind_ordinary_sessions_gets_pieces_doubling_away_from_it() {
        // (days in the window, ordinary sessions and their spacing, where
        // the hot hour ends, hot sessions and their spacing, pages fetched,
        // pieces asked for)
        let cases = [
            // Seven pages in: six days of ordinary sessions, then a page
            // from a hot hour that starts nine hours after the window does.
            (6, (1200, 260_000), 10 * HOUR, (200, 230), 7, 15),
            // One page in time order: 120 ordinary sessions over the last
            // day, then 80 from a hot hour a day into the window. Cut
            // evenly, the unseen day would be 56 pieces of a few sessions.
            (2, (120, 700_000), 24 * HOUR, (80, 2000), 1, 56),
        ];
        for (days, ordinary, hot, (count, spacing), pages_done, asked) in cases {
            let window = TimeRange {
                start: 0,
                end: days * 24 * HOUR,
            };
            let seen = ordinary_then_hot(window, ordinary, hot, (count, spacing));
            let pieces = split_window(
                found(window, &seen, pages_done, false),
                asked,
                MINUTE,
                200,
                0.0,
            );
            assert_covers(window, &pieces, MINUTE);
            let edge = hot - (count - 1) * spacing;
            assert_hot_edge_pieces(&pieces, edge, 4 * 200 * spacing);
            assert!(pieces.len() < 20, "{} pieces: {pieces:?}", pieces.len());
            assert!(
                pieces.iter().filter(|p| p.end <= edge).count() >= 5,
                "{pieces:?}"
            );
        }
    }

    #[test]
    fn a_page_all_from_a_hot_stretch_doubles_away_from_it_only_when_the_density_is_local() {
        // Two days, and a first page in time order (newest first) of 200
        // sessions 0.4 s apart at the window's end: the edge of a hot hour,
        // or a month that busy throughout.
        let window = TimeRange {
            start: 0,
            end: 2 * 24 * HOUR,
        };
        let spacing = 400;
        let seen: Vec<i64> = (0..200).map(|i| window.end - 1 - i * spacing).collect();
        let edge = window.end - 1 - 199 * spacing;
        // Known to be local (the whole state holds far less than two days
        // at this density): pieces double in width away from the edge.
        let pieces = split_window(found(window, &seen, 1, true), 12, MINUTE, 200, 0.0);
        assert_covers(window, &pieces, MINUTE);
        assert_hot_edge_pieces(&pieces, edge, 4 * 200 * spacing);
        // Otherwise an even split by time, as for a busy month.
        let pieces = split_window(found(window, &seen, 1, false), 12, MINUTE, 200, 0.0);
        assert_covers(window, &pieces, MINUTE);
        let (narrowest, widest) = spread(&pieces);
        assert_eq!(pieces.len(), 12, "{pieces:?}");
        assert!(widest - narrowest <= widest / 100, "{pieces:?}");
    }

    /// Pieces that double in width away from a dense edge at `edge` (the
    /// seen stretch after it stays one piece): the one next to it about
    /// `near_ms` wide, each further one at least as wide as its neighbour.
    fn assert_hot_edge_pieces(pieces: &[TimeRange], edge: i64, near_ms: i64) {
        assert!(pieces.len() >= 5, "{pieces:?}");
        let (seen, unseen) = pieces.split_last().expect("pieces");
        assert!((seen.start - edge).abs() < 1000, "{pieces:?}");
        let widths: Vec<i64> = unseen.iter().rev().map(|p| p.end - p.start).collect();
        assert!(
            (widths[0] - near_ms).abs() <= near_ms / 10 + 1000,
            "{widths:?}"
        );
        assert!(
            widths
                .windows(2)
                .take(widths.len() - 2)
                .all(|w| w[1] >= w[0]),
            "{widths:?}"
        );
    }

    #[test]
    fn a_window_promising_many_shares_on_its_first_page_is_split_without_a_waiting_worker() {
        // One worker's share is 6 pages: 73 pages are 12 shares, cut in 4.
        assert_eq!(straggler_pieces(|| 73.0, 6.0, 16, 1), Some(4));
        assert_eq!(straggler_pieces(|| 20.0, 6.0, 16, 1), Some(3));
        // Under three shares, after the first page, or when the rate keeps
        // one call busy: no.
        assert_eq!(straggler_pieces(|| 17.0, 6.0, 16, 1), None);
        assert_eq!(straggler_pieces(|| 73.0, 6.0, 16, 2), None);
        // After the first page the dates seen are not even estimated.
        let not_estimated = || -> f64 { panic!("estimated after the first page") };
        assert_eq!(straggler_pieces(not_estimated, 6.0, 16, 2), None);
        assert_eq!(straggler_pieces(|| 73.0, 6.0, 1, 1), None);
        assert_eq!(straggler_pieces(|| 73.0, 6.0, 2, 1), Some(2));
    }

    #[test]
    fn a_burst_on_one_instant_is_never_cut_and_narrow_windows_stay_whole() {
        let window = TimeRange {
            start: 0,
            end: 2 * HOUR,
        };
        let burst = vec![HOUR + 500; 200];
        let pieces = split_window(found(window, &burst, 1, false), 8, MINUTE, 200, 0.0);
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
        assert_eq!(
            split_window(found(narrow, &burst, 1, false), 8, MINUTE, 200, 0.0),
            vec![narrow]
        );
        assert_eq!(
            split_window(found(window, &burst, 1, false), 1, MINUTE, 200, 0.0),
            vec![window]
        );
    }
}
