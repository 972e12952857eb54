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
    /// The whole pages it holds when it was cut from an earlier crawl's
    /// layout ([`pieces_from_counts`]) into as many pieces as workers: it
    /// is not split before it pages past them, since idle workers would
    /// fetch its pages again for a split the layout says buys nothing.
    /// None otherwise (also when last night's rate held the pieces to
    /// fewer than the workers).
    pub planned_pages: Option<u32>,
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

/// How many sessions a stretch of time held in an earlier crawl.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct KnownCount {
    pub window: TimeRange,
    pub sessions: u64,
}

/// Where a complete crawl found its sessions: the `StartDate` of every
/// `every`-th of them in time order, and of the last. Kept in the complete
/// checkpoint (a few thousand dates at most, however many sessions), so the
/// next night's plan knows how many sessions lie between any two of them.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct StartDateLayout {
    /// The sessions the crawl found in its window.
    pub sessions: u64,
    pub every: u64,
    /// Sorted; the first session's, every `every`-th after it, and the last
    /// one's.
    pub dates: Vec<i64>,
}

/// The most dates a [`StartDateLayout`] keeps: a million sessions are laid
/// out every 245 sessions, about a page.
pub const LAYOUT_DATES: u64 = 4096;
/// The fewest sessions between two dates of a layout: fine enough that a
/// density changing inside one such stretch (a hot hour's edge) misplaces
/// fewer sessions than a piece's margin below its last page.
pub const LAYOUT_EVERY: u64 = 50;

impl StartDateLayout {
    /// The layout of the sessions whose start dates are `dates` (any order).
    pub fn of(mut dates: Vec<i64>) -> StartDateLayout {
        dates.sort_unstable();
        let sessions = dates.len() as u64;
        let every = sessions.div_ceil(LAYOUT_DATES).max(LAYOUT_EVERY);
        // The first, every `every`-th after it, and the last when not one
        // of those.
        let mut kept: Vec<i64> = dates.iter().step_by(every as usize).copied().collect();
        if let Some(&last) = dates.last() {
            if !(sessions - 1).is_multiple_of(every) {
                kept.push(last);
            }
        }
        StartDateLayout {
            sessions,
            every,
            dates: kept,
        }
    }

    /// The layout as counts over `crawled`, the window it was taken in:
    /// `every` sessions between two consecutive dates (at least a second
    /// wide: a burst on one instant is there too), the rest between the
    /// last two, none before the first or after the last. Nothing when it
    /// does not add up (a hand-edited file): the plan is then a first
    /// night's.
    pub fn counts(&self, crawled: TimeRange) -> Vec<KnownCount> {
        let dates = &self.dates;
        let intervals = (dates.len() as u64).saturating_sub(1);
        let consistent = dates.is_sorted()
            && dates.len() as u64 <= LAYOUT_DATES + 2
            && self.every >= 1
            && dates.first().is_none_or(|first| *first >= crawled.start)
            && dates.last().is_none_or(|last| *last < crawled.end)
            && match dates.len() {
                0 => self.sessions == 0,
                1 => self.sessions == 1,
                _ => {
                    let before_last = (intervals - 1).saturating_mul(self.every);
                    self.sessions > before_last
                        && self.sessions <= before_last.saturating_add(self.every).saturating_add(1)
                }
            };
        if !consistent || crawled.end <= crawled.start {
            return Vec::new();
        }
        let mut counts = Vec::with_capacity(dates.len() + 2);
        let first = dates.first().copied().unwrap_or(crawled.end);
        let last = dates.last().map_or(crawled.end, |last| last + 1);
        counts.push(KnownCount {
            window: TimeRange {
                start: crawled.start,
                end: first,
            },
            sessions: 0,
        });
        for (index, pair) in dates.windows(2).enumerate() {
            let is_last = index as u64 + 1 == intervals;
            // The last stretch holds the rest, its last session included.
            let (sessions, end) = if is_last {
                (self.sessions - (intervals - 1) * self.every, pair[1] + 1)
            } else {
                (self.every, pair[1])
            };
            counts.push(KnownCount {
                window: TimeRange {
                    start: pair[0],
                    end: end.max(pair[0].saturating_add(1000)),
                },
                sessions,
            });
        }
        if dates.len() == 1 {
            counts.push(KnownCount {
                window: TimeRange {
                    start: first,
                    end: first.saturating_add(1000),
                },
                sessions: 1,
            });
        }
        counts.push(KnownCount {
            window: TimeRange {
                start: last,
                end: crawled.end,
            },
            sessions: 0,
        });
        counts
    }
}

/// The first jobs of a crawl, and the History pages they are expected to
/// hold when an earlier crawl said so.
#[derive(Debug, Clone, PartialEq)]
pub struct Plan {
    pub jobs: Vec<CrawlJob>,
    /// The pages History is expected to hold, from the last complete
    /// crawl's counts; None when nothing is known (a first crawl).
    pub history_pages: Option<f64>,
}

/// The first jobs of a crawl: Active whole; History over the whole window,
/// or, when the last complete crawl of this (account, region) laid out
/// where its sessions were (`last_crawl`, from its [`StartDateLayout`]),
/// cut where they are into at most `max_pieces` pieces for the workers
/// ([`pieces_from_counts`]).
pub fn plan_jobs(config: &ExportConfig, last_crawl: &[KnownCount], max_pieces: usize) -> Plan {
    let mut jobs = Vec::new();
    let mut history_pages = None;
    for state in &config.states {
        let windows = match state {
            SessionState::Active => vec![(None, None)],
            SessionState::History => {
                let concurrency = config.concurrency.max(1);
                let max_pieces = max_pieces.clamp(1, concurrency);
                match pieces_from_counts(
                    config.window,
                    last_crawl,
                    max_pieces,
                    config.slice_ms,
                    config.page_size.max(1) as usize,
                ) {
                    Some(known) => {
                        history_pages = Some(known.pages);
                        // Pieces held back by last night's rate stay open
                        // to idle workers: tonight's rate may be higher,
                        // and the pacer keeps splits to what it allows.
                        let planned = (known.pieces.len() > 1 && max_pieces == concurrency)
                            .then_some(known.piece_pages);
                        known
                            .pieces
                            .into_iter()
                            .map(|piece| (Some(piece), planned))
                            .collect()
                    }
                    None => vec![(Some(config.window), None)],
                }
            }
        };
        for (window, planned_pages) in windows {
            jobs.push(CrawlJob {
                id: jobs.len() as u32,
                state: *state,
                window,
                resume_token: None,
                pages_done: 0,
                planned_pages,
            });
        }
    }
    Plan {
        jobs,
        history_pages,
    }
}

/// The fewest whole pages a piece cut from known counts is planned to hold:
/// a piece of one page would spill into a second on a few sessions more
/// than counted.
pub const KNOWN_PIECE_PAGES: f64 = 2.0;

/// At most this share of a page may lie within a second or two of an edge
/// cut from counts (see [`pieces_from_counts`]).
const QUIET_EDGE: f64 = 0.1;

/// History's first windows cut from an earlier crawl's layout.
#[derive(Debug, Clone, PartialEq)]
pub struct KnownPieces {
    pub pieces: Vec<TimeRange>,
    /// The whole pages each piece is planned to hold (the last may hold
    /// fewer).
    pub piece_pages: u32,
    /// The pages `window` is expected to hold.
    pub pages: f64,
}

/// Cuts `window` into at most `max_pieces` contiguous pieces that each hold
/// just under the same whole number of pages, as the sessions an earlier
/// crawl found (`counts`, from its [`StartDateLayout`]) say: a nightly crawl
/// of the last 30 days shares 29 of them with the night before, which paged
/// every window to the end. Each piece is planned [`PAGE_MARGIN`] under its
/// last full page (sessions that ended since, and counts spread evenly
/// inside each counted stretch, add a few), so a skewed month is paged at
/// full concurrency from its first call, and an even one with part-full
/// last pages only where the pieces end. A counted window's sessions are
/// taken as spread evenly over it; a stretch no count covers (the day since
/// the last crawl) as dense as the counted window next to it. Edges fall on
/// whole seconds, no piece narrower than `min_width_ms`; fewer than two
/// pieces' worth gives the window whole, as a first crawl would.
///
/// None when the counts cover less than half of `window` (or add up to no
/// finite number): they say too little, and the crawl starts as a first
/// one does. The counts shape the plan only: the pieces always cover
/// `window` exactly, whatever the counts hold.
pub fn pieces_from_counts(
    window: TimeRange,
    counts: &[KnownCount],
    max_pieces: usize,
    min_width_ms: i64,
    page_size: usize,
) -> Option<KnownPieces> {
    let width = window.end - window.start;
    if width <= 0 || counts.is_empty() {
        return None;
    }
    // Each counted window as an even density over its part of `window`:
    // +density where it starts, -density where it ends.
    let mut steps: Vec<(i64, f64, i32)> = Vec::with_capacity(counts.len() * 2);
    for count in counts {
        let counted = count.window.end - count.window.start;
        let start = count.window.start.max(window.start);
        let end = count.window.end.min(window.end);
        if counted <= 0 || start >= end {
            continue;
        }
        let density = count.sessions as f64 / counted as f64;
        steps.push((start, density, 1));
        steps.push((end, -density, -1));
    }
    steps.sort_by_key(|step| step.0);
    // Stretches of `window` with their density, None where nothing counted.
    let mut stretches: Vec<(i64, i64, Option<f64>)> = Vec::new();
    let (mut at, mut density, mut covering) = (window.start, 0.0_f64, 0_i32);
    for (time, change, cover) in steps {
        if time > at {
            stretches.push((at, time, (covering > 0).then_some(density.max(0.0))));
            at = time;
        }
        density += change;
        covering += cover;
    }
    if at < window.end {
        stretches.push((at, window.end, None));
    }
    let (covered, counted) = stretches
        .iter()
        .filter_map(|&(start, end, d)| d.map(|d| ((end - start) as f64, d * (end - start) as f64)))
        .fold((0.0, 0.0), |(w, s), (dw, ds)| (w + dw, s + ds));
    if covered < width as f64 / 2.0 || !counted.is_finite() {
        return None;
    }
    // A stretch nothing counted is as dense as the counted one before it
    // (the day since the last crawl, as its newest window), or after it.
    let first_counted = stretches.iter().find_map(|s| s.2).unwrap_or(0.0);
    let mut nearest = first_counted;
    let stretches: Vec<(i64, i64, f64)> = stretches
        .into_iter()
        .map(|(start, end, d)| {
            nearest = d.unwrap_or(nearest);
            (start, end, nearest)
        })
        .collect();
    let total: f64 = stretches
        .iter()
        .map(|&(start, end, d)| d * (end - start) as f64)
        .sum();
    let page = page_size.max(1) as f64;
    let pages = total / page;
    // Whole pages per piece: the fewest that `max_pieces` pieces hold.
    let per_page = page * (1.0 - PAGE_MARGIN);
    let piece_pages = (total / (max_pieces.max(1) as f64 * per_page))
        .ceil()
        .max(KNOWN_PIECE_PAGES);
    let capacity = piece_pages * per_page;
    let whole_pages = piece_pages.min(f64::from(u32::MAX)) as u32;
    if !total.is_finite() || total <= capacity {
        return Some(KnownPieces {
            pieces: vec![window],
            piece_pages: whole_pages,
            pages,
        });
    }
    let mut edges = vec![window.start];
    let mut before = 0.0;
    let mut target = capacity;
    // The sessions within a query's widening of an edge (a second each
    // side, and the second it falls in): a window's query returns them
    // too, as its neighbour's, and they fill its pages.
    let near = |edge: i64| -> f64 {
        stretches
            .iter()
            .map(|&(start, end, d)| {
                let overlap = end.min(edge + 2000) - start.max(edge - 2000);
                d * overlap.max(0) as f64
            })
            .sum()
    };
    let quiet = page * QUIET_EDGE;
    for &(start, end, d) in &stretches {
        let weight = d * (end - start) as f64;
        while d > 0.0 && before + weight >= target {
            let cut = start + ((target - before) / d) as i64;
            let mut edge = cut.clamp(start, end).div_euclid(1000) * 1000;
            // An edge beside a burst on one instant would have both windows
            // page the burst: it moves before the burst, up to a minute.
            if near(edge) > quiet {
                if let Some(calm) = (1..=60)
                    .map(|s| edge - s * 1000)
                    .find(|e| near(*e) <= quiet)
                {
                    edge = calm;
                }
            }
            let last = edges.last().copied().unwrap_or(window.start);
            if edge - last >= min_width_ms.max(1000) && window.end - edge >= min_width_ms.max(1000)
            {
                edges.push(edge);
            }
            target += capacity;
        }
        before += weight;
    }
    edges.push(window.end);
    Some(KnownPieces {
        pieces: to_ranges(&edges),
        piece_pages: whole_pages,
        pages,
    })
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
/// last page alone would cost more than its share). When those calls, not
/// the workers waiting, bound a state's first window, it is cut into the
/// fewest pieces that take as many round trips
/// ([`fewest_pieces_for_the_same_rounds`]). A window with fewer than two
/// pages left is never split: it would not end sooner. A sample that
/// reaches across the window says nothing of how much remains: it is cut
/// into `pieces` on its first page only, unless its dates came in time
/// order (then they are the window's edge).
///
/// Pieces double away from an edge that the pages show dense (see
/// [`hot_edge_pieces`]): the tenth of the dates nearest it is much denser
/// than the rest, or a short run of dates there is (a hot stretch that the
/// page only just reached; its density, not the page's, is then assumed
/// beyond that edge). Failing that, when the density is known to be local
/// ([`Found::dense_is_local`]), a page in time order is the edge of a dense
/// stretch however evenly dense the page itself is, and the pieces double
/// towards the window's start when the page leaves a slice of it unseen:
/// the right side for a page listed newest first; for one listed oldest
/// first after a gap, the pieces cover the gap and the dense rest stays one
/// piece, split again on its own first page (leading into the longer
/// stretch instead measured 143 to 149 calls at 64 on a skewed month listed
/// oldest first, against 126 to 128).
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
    // Whether the calls, not the workers waiting, bound the pieces.
    let mut calls_bound = false;
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
        calls_bound = (affordable as usize) < pieces;
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
    // Fewer pieces than workers waiting leave some idle, and idle workers
    // split the next heavy page they meet: only when the calls already
    // left workers idle is a piece that buys nothing dropped. And only in a
    // state's first window, cut into the most pieces on a page of ordinary
    // density: in a dense stretch, whose estimate is one page's edge,
    // dropping them measured slower (100k skewed at 64, listed oldest
    // first: 3.38 to 4.02 s against 3.16 to 3.51 s).
    let pieces = if calls_bound && allowance > 0.0 {
        fewest_pieces_for_the_same_rounds(weight.total() / page_size.max(1) as f64, pieces)
    } else {
        pieces
    };
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

/// How far below a whole number of pages a piece is planned, as a share of
/// its pages: the estimate is a sample's, and a piece a little over its
/// last full page costs a round trip and a call more.
const PAGE_MARGIN: f64 = 0.05;

/// The fewest of at most `pieces` equal pieces of `pages` estimated pages
/// that take as many round trips as `pieces` would. Every piece ends on a
/// part-full page, so a piece more buys nothing but a call when the
/// pieces' pages round up to the same whole number: a month of 100 pages
/// in 30 pieces is 30 pieces of 4 calls (3.3 pages each), in 27 it is 27
/// of 4 (3.7 each).
fn fewest_pieces_for_the_same_rounds(pages: f64, pieces: usize) -> usize {
    if pieces < 2 || pages.is_nan() || pages <= 0.0 {
        return pieces;
    }
    let planned = |count: usize| pages / count as f64 * (1.0 + PAGE_MARGIN);
    let rounds = planned(pieces).ceil();
    let fewest = (pages * (1.0 + PAGE_MARGIN) / rounds).ceil() as usize;
    fewest.clamp(2, pieces)
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

/// Estimated pages the piece next to a dense edge holds (see
/// [`hot_edge_pieces`]); measured on a skewed month at concurrency 16 and 64,
/// two gave the fewest calls at 20,000 sessions and six the fastest crawl at
/// 100,000.
const PAGES_AT_THE_EDGE: f64 = 4.0;

/// At most this many pieces double away from a dense edge (the first holds
/// [`PAGES_AT_THE_EDGE`] pages at the edge's density, the five 31 times
/// that); the rest of the window stays one piece, split again on its own
/// first page when heavy. Past a handful, doubling pieces mostly cover what
/// lies beyond the dense stretch, a call each: on a skewed month of 20,000
/// sessions listed newest first, 13 of them at concurrency 64 took 135 to
/// 139 calls, 5 took 115 to 119, in the same time.
const DOUBLING_PIECES: usize = 5;

/// A run of dates at a page's edge this many times denser than the page is
/// the edge of a dense stretch (see [`edge_run_density`]): among
/// dates spread at random, five in a row this close together (four gaps
/// adding up to a quarter of one average gap) come at about one edge in
/// 7,000 (simulated over 100,000 edges); a hot hour is thousands of times
/// denser than the rest.
const EDGE_RUN_CONTRAST: f64 = 16.0;
/// The fewest distinct dates, and the most dates, such a run holds.
const EDGE_RUN_DISTINCT: usize = 5;
const EDGE_RUN_DATES: usize = 20;

/// A later page (or a first page listed in time order) that reached a
/// stretch much denser than the pages before it (a hot hour behind
/// ordinary sessions), or any page in time order whose density is known to
/// be local (`dense_is_local`), says the stretch starts there, not how far
/// it goes. Cutting the unseen rest at equal estimated weight would assume
/// it all that dense and cut it into pieces of a few sessions each. Pieces
/// instead double in width away from the dense edge: the first holds
/// [`PAGES_AT_THE_EDGE`] pages at the edge's density, at most
/// [`DOUBLING_PIECES`] of them, and a piece that proves heavy (the rest of
/// the window among them) is split again on its own first page. None when
/// no such edge.
fn hot_edge_pieces(
    window: TimeRange,
    weight: &Weight<'_>,
    pieces: usize,
    min_width_ms: i64,
    page_size: usize,
    dense_is_local: bool,
) -> Option<Vec<i64>> {
    let (first, last) = (weight.first_seen(), weight.last_seen());
    let average = weight.average;
    // Which edge is dense with an unseen stretch beyond it, and its density.
    // An edge the page itself shows dense comes first: the tenth of the page
    // nearest it is denser than the page, or a short run of dates there is
    // (a dense stretch that the page only just reached). Only then one that
    // is dense because the whole page is and the density is local.
    let room_before = first - window.start >= min_width_ms;
    let room_after = window.end - last >= min_width_ms;
    let shown_dense = |density: f64, run: bool| run || density > 4.0 * average;
    let candidates = [
        (room_before && shown_dense(weight.density_before, weight.run_before)),
        (room_after && shown_dense(weight.density_after, weight.run_after)),
        (room_before && dense_is_local),
        (room_after && dense_is_local),
    ];
    let (edge, density, backwards) = match candidates.iter().position(|dense| *dense) {
        Some(0 | 2) => (first, weight.density_before, true),
        Some(_) => (last, weight.density_after, false),
        None => return None,
    };
    let mut width = ((PAGES_AT_THE_EDGE * page_size as f64 / density) as i64)
        .max(min_width_ms)
        .max(1000);
    let mut cuts = vec![edge.div_euclid(1000) * 1000];
    while cuts.len() < pieces.min(DOUBLING_PIECES + 1) {
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
    /// Sessions per millisecond over the seen span.
    average: f64,
    /// Whether a run of dates at the first (last) seen date is the edge of
    /// a dense stretch, and `density_before` (`density_after`) its density.
    run_before: bool,
    run_after: bool,
}

impl<'a> Weight<'a> {
    fn estimate(window: TimeRange, dates: &'a [i64]) -> Weight<'a> {
        let (mut density_before, mut density_after) = match (dates.first(), dates.last()) {
            (Some(&first), Some(&last)) => {
                // The density of the dates nearest each edge: a tenth of a
                // page's worth at most, so that a dense stretch just reached
                // is not averaged away by the pages before it. Distinct
                // dates: a burst on one instant at the edge is no dense
                // stretch beyond it.
                let edge = (dates.len() / 10).clamp(1, 20).min(dates.len());
                (
                    distinct_density(dates.iter(), first, edge),
                    distinct_density(dates.iter().rev(), last, edge),
                )
            }
            // Nothing seen: weight by time alone.
            _ => (1.0, 1.0),
        };
        // A run of dates at an edge far denser than the page (a few
        // sessions of a hot hour that the page only just reached) is the
        // density beyond that edge, which the tenth of a page averages away.
        let average = match (dates.first(), dates.last()) {
            (Some(&first), Some(&last)) => dates.len() as f64 / (last - first).max(1000) as f64,
            _ => f64::INFINITY,
        };
        let dense_run = |density: &mut f64, run: f64| {
            let dense = run > EDGE_RUN_CONTRAST * average;
            if dense {
                *density = density.max(run);
            }
            dense
        };
        let run_before = dense_run(&mut density_before, edge_run_density(dates.iter()));
        let run_after = dense_run(&mut density_after, edge_run_density(dates.iter().rev()));
        Weight {
            window,
            dates,
            density_before,
            density_after,
            average,
            run_before,
            run_after,
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

/// The density (per millisecond) of the `count` distinct dates nearest
/// `edge` among `dates` (sorted from that edge inward), over their span
/// (at least a second). So no edge reads denser than `count` a second (20
/// for a full page's tenth): a hot hour of 22 a second is estimated a
/// quarter short. The rules that cut a dense stretch were measured with
/// that cap, and a floor of 5 ms a date measured no better (BENCHMARKS.md,
/// "Tried at d1d66e7").
fn distinct_density<'d>(dates: impl Iterator<Item = &'d i64>, edge: i64, count: usize) -> f64 {
    let mut distinct = 0;
    let mut farthest = edge;
    let mut previous = None;
    for &date in dates {
        if previous != Some(date) {
            distinct += 1;
            farthest = date;
            previous = Some(date);
            if distinct == count {
                break;
            }
        }
    }
    distinct.max(1) as f64 / (farthest - edge).abs().max(1000) as f64
}

/// The highest density (per millisecond) of a run of `dates` (sorted from
/// one edge inward), over runs that hold at least [`EDGE_RUN_DISTINCT`]
/// distinct dates and at most [`EDGE_RUN_DATES`] dates; 0 when none does.
/// Distinct, because sessions that share one `StartDate` are a burst that
/// no split by time divides, not the edge of a dense stretch.
fn edge_run_density<'d>(dates: impl Iterator<Item = &'d i64>) -> f64 {
    let mut run = dates.take(EDGE_RUN_DATES).copied().peekable();
    let Some(&edge) = run.peek() else {
        return 0.0;
    };
    let mut distinct = 0;
    let mut previous = None;
    let mut highest: f64 = 0.0;
    for (index, date) in run.enumerate() {
        if previous != Some(date) {
            distinct += 1;
            previous = Some(date);
        }
        if distinct >= EDGE_RUN_DISTINCT {
            // Gaps over their span: exact for evenly spaced dates, where a
            // count over the span would overstate a short run's density.
            let span = (date - edge).abs().max(1000);
            highest = highest.max(index as f64 / span as f64);
        }
    }
    highest
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
    fn a_first_window_cut_for_its_calls_gets_no_piece_that_buys_nothing() {
        let window = TimeRange {
            start: 0,
            end: 30 * 24 * HOUR,
        };
        let step = 30 * 24 * HOUR / 20_000;
        let seen: Vec<i64> = (0..200).map(|i| window.end - 1 - i * step).collect();
        // 64 workers wait; the spare calls (15% of the 105 pages estimated,
        // and the first window's 4) pay for 31 pieces of 3.4 pages, 4 calls
        // each. The fewest pieces that still take 4 calls each (with the
        // margin) are cut instead; one fewer would take 5.
        let pieces = split_window(found(window, &seen, 1, false), 64, MINUTE, 200, 4.0);
        let pages = estimated_pages(window, &seen, 200);
        let calls_each = |n: usize| (pages / n as f64 * (1.0 + PAGE_MARGIN)).ceil();
        assert_eq!(pieces.len(), 28, "{pages}: {pieces:?}");
        assert_eq!(calls_each(pieces.len()), 4.0, "{pages}");
        assert_eq!(calls_each(pieces.len() - 1), 5.0, "{pages}");
        assert_covers(window, &pieces, MINUTE);
        let (narrowest, widest) = spread(&pieces);
        assert!(widest < narrowest + narrowest / 10, "{pieces:?}");
        // Pieces the workers waiting bound are all kept: dropping one
        // leaves a worker idle, and it splits the next heavy page it meets.
        let waiting = split_window(found(window, &seen, 1, false), 16, MINUTE, 200, 4.0);
        assert_eq!(waiting.len(), 16);
        // So are a later window's: a dense stretch's estimate is one page's.
        let later = split_window(found(window, &seen, 1, false), 64, MINUTE, 200, 0.0);
        // (its own 15% pays for 29 of 3.6 pages, 4 calls each)
        assert_eq!(later.len(), 29, "{pages}");
        assert_eq!(calls_each(later.len()), 4.0, "{pages}");
    }

    #[test]
    fn the_fewest_pieces_take_as_many_round_trips() {
        // 100 pages: 30 pieces take 4 calls each, and so do 27 (3.7 pages,
        // 3.9 with the margin); 16 take 7, and so do 15.
        assert_eq!(fewest_pieces_for_the_same_rounds(100.0, 30), 27);
        assert_eq!(fewest_pieces_for_the_same_rounds(100.0, 16), 15);
        // 25 would be exactly 4 pages: with the margin, 5 calls, as 21 are.
        assert_eq!(fewest_pieces_for_the_same_rounds(100.0, 25), 21);
        for (pages, pieces) in [(3.0, 2), (0.5, 4), (1000.0, 64), (7.0, 3), (0.0, 5)] {
            let fewest = fewest_pieces_for_the_same_rounds(pages, pieces);
            assert!((2..=pieces).contains(&fewest), "{pages} {pieces}: {fewest}");
            let rounds = |n: usize| (pages / n as f64 * (1.0 + PAGE_MARGIN)).ceil();
            assert_eq!(rounds(fewest), rounds(pieces), "{pages} {pieces}");
        }
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

    #[test]
    fn a_page_that_just_reaches_a_hot_stretch_measures_it_from_the_run_at_its_edge() {
        let window = TimeRange {
            start: 0,
            end: 5 * 24 * HOUR,
        };
        // Newest first: 185 ordinary sessions over the last 36 hours, then
        // 15 of a hot hour 0.15 s apart. The tenth of the page nearest the
        // edge (those 15 and 5 ordinary ones) is not four times denser than
        // the page; the run of 15 is thousands of times.
        let hot_end = window.end - 185 * 700_000;
        let seen = ordinary_then_hot(window, (185, 700_000), hot_end, (15, 150));
        let edge = hot_end - 14 * 150;
        let pieces = split_window(found(window, &seen, 1, false), 10, MINUTE, 200, 0.0);
        assert_covers(window, &pieces, MINUTE);
        assert_hot_edge_pieces(&pieces, edge, 4 * 200 * 150);
        // The seen stretch, the pieces doubling away from the edge, and the
        // rest: the run, not the tenth of the page, says how much work the
        // window holds.
        assert_eq!(pieces.len(), DOUBLING_PIECES + 2, "{pieces:?}");
    }

    #[test]
    fn a_dense_stretch_the_page_reached_wins_over_a_gap_before_its_first_date() {
        // Oldest first: ten minutes without sessions, 55 ordinary ones ten
        // minutes apart, then 145 of a hot hour 0.25 s apart. Known local
        // or not, the pieces double forward from the hot edge; the gap
        // before the first date says nothing.
        let window = TimeRange {
            start: 0,
            end: 3 * 24 * HOUR,
        };
        let mut seen: Vec<i64> = (0..55).map(|i| 10 * MINUTE + i * 10 * MINUTE).collect();
        let hot_start = 10 * MINUTE + 55 * 10 * MINUTE;
        seen.extend((0..145).map(|i| hot_start + i * 250));
        let edge = (hot_start + 144 * 250) / 1000 * 1000;
        for dense_is_local in [false, true] {
            let pieces = split_window(found(window, &seen, 1, dense_is_local), 8, MINUTE, 200, 4.0);
            assert_covers(window, &pieces, MINUTE);
            let next = pieces
                .iter()
                .find(|p| p.start == edge)
                .unwrap_or_else(|| panic!("a piece starts at the edge: {pieces:?}"));
            let near = 4 * 200 * 250;
            assert!(
                (next.end - next.start - near).abs() <= near / 10 + 1000,
                "{pieces:?}"
            );
            assert!(
                pieces[0].end >= edge,
                "the seen stretch stays one piece: {pieces:?}"
            );
        }
    }

    #[test]
    fn sessions_sharing_one_start_date_at_the_edge_are_no_dense_stretch() {
        let window = TimeRange {
            start: 0,
            end: 5 * 24 * HOUR,
        };
        // 188 ordinary sessions, then 12 that started at one instant.
        let burst_at = window.end - 188 * 700_000;
        let seen = ordinary_then_hot(window, (188, 700_000), burst_at, (12, 0));
        let pieces = split_window(found(window, &seen, 1, false), 10, MINUTE, 200, 4.0);
        assert_covers(window, &pieces, MINUTE);
        assert!(
            pieces.iter().all(|p| p.end - p.start >= HOUR),
            "no narrow pieces at the burst: {pieces:?}"
        );
    }

    #[test]
    fn a_run_at_an_edge_is_measured_by_its_gaps_and_needs_five_distinct_dates() {
        let even: Vec<i64> = (0..30).map(|i| 1_000_000 + i * 300).collect();
        let density = edge_run_density(even.iter());
        assert!((density - 1.0 / 300.0).abs() < 1e-9, "{density}");
        assert!((edge_run_density(even.iter().rev()) - density).abs() < 1e-9);
        // Four distinct dates, however many sessions share them: no run.
        let four: Vec<i64> = [5_000; 10]
            .into_iter()
            .chain([6_000; 5])
            .chain([7_000, 8_000])
            .collect();
        assert_eq!(edge_run_density(four.iter()), 0.0);
        assert_eq!(edge_run_density([].iter()), 0.0);
    }

    #[test]
    fn dates_spread_at_random_seldom_make_a_dense_edge() {
        // 1,000 pages of 200 dates drawn at random over a day: a dense
        // run at either edge is a false alarm, about one edge in 7,000.
        let mut rng = fastrand::Rng::with_seed(11);
        let window = TimeRange {
            start: 0,
            end: 24 * HOUR,
        };
        let mut alarms = 0;
        for _ in 0..1000 {
            let mut dates: Vec<i64> = (0..200).map(|_| rng.i64(0..24 * HOUR)).collect();
            dates.sort_unstable();
            let weight = Weight::estimate(window, &dates);
            alarms += usize::from(weight.run_before) + usize::from(weight.run_after);
        }
        assert!(alarms <= 3, "{alarms} false alarms in 2,000 edges");
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

    /// The sessions of `dates` in each of `windows`.
    fn held(windows: &[TimeRange], dates: &[i64]) -> Vec<u64> {
        windows
            .iter()
            .map(|w| dates.iter().filter(|t| w.contains(**t)).count() as u64)
            .collect()
    }

    /// A skewed month's `StartDate`s (80% in one hour, the rest spread at
    /// random) and the counts its layout gives.
    fn last_night(last: TimeRange, hot: i64) -> (Vec<i64>, Vec<KnownCount>) {
        let mut rng = fastrand::Rng::with_seed(7);
        let width = last.end - last.start;
        let mut dates: Vec<i64> = (0..4_000).map(|_| last.start + rng.i64(0..width)).collect();
        dates.extend((0..16_000).map(|_| hot + rng.i64(0..HOUR)));
        let counts = StartDateLayout::of(dates.clone()).counts(last);
        (dates, counts)
    }

    #[test]
    fn a_layout_keeps_a_few_thousand_dates_and_counts_every_session() {
        let crawled = TimeRange {
            start: 0,
            end: 30 * 24 * HOUR,
        };
        let mut rng = fastrand::Rng::with_seed(3);
        for sessions in [0_usize, 1, 2, 49, 50, 51, 101, 20_000, 1_000_000] {
            let dates: Vec<i64> = (0..sessions)
                .map(|_| rng.i64(crawled.start..crawled.end))
                .collect();
            let layout = StartDateLayout::of(dates.clone());
            assert!(layout.dates.len() as u64 <= LAYOUT_DATES + 1, "{sessions}");
            let counts = layout.counts(crawled);
            assert_eq!(
                counts.iter().map(|c| c.sessions).sum::<u64>(),
                sessions as u64,
                "{sessions}: {counts:?}"
            );
            assert_eq!(counts.first().map(|c| c.window.start), Some(crawled.start));
            assert_eq!(counts.last().map(|c| c.window.end), Some(crawled.end));
            if sessions == 20_000 {
                // Distinct dates: each stretch holds what it counts.
                for count in &counts {
                    let held = dates.iter().filter(|t| count.window.contains(**t)).count() as u64;
                    assert_eq!(held, count.sessions, "{count:?}");
                }
            }
        }
        // A burst on one instant still counts, in a second of its own.
        let burst = StartDateLayout::of(vec![HOUR; 500]).counts(crawled);
        assert_eq!(burst.iter().map(|c| c.sessions).sum::<u64>(), 500);
        // A layout that does not add up, or lies outside its window, plans
        // nothing.
        let mut edited = StartDateLayout::of((0..1_000).map(|i| i * MINUTE).collect());
        edited.sessions = 5_000;
        assert!(edited.counts(crawled).is_empty());
        edited.sessions = 1_000;
        assert!(!edited.counts(crawled).is_empty());
        edited.every = u64::MAX;
        assert!(edited.counts(crawled).is_empty());
        edited.every = 50;
        edited.dates.reverse();
        assert!(edited.counts(crawled).is_empty());
        edited.dates.reverse();
        assert!(edited
            .counts(TimeRange {
                start: HOUR,
                end: crawled.end
            })
            .is_empty());
    }

    #[test]
    fn last_nights_counts_cut_a_skewed_month_into_pieces_of_whole_pages() {
        let day = 24 * HOUR;
        let last = TimeRange {
            start: 100 * day,
            end: 130 * day,
        };
        let hot = 117 * day + 5 * HOUR + 123;
        let (mut dates, counts) = last_night(last, hot);
        // Tonight: a day later, with a day of new sessions, and the oldest
        // day gone.
        let tonight = TimeRange {
            start: last.start + day,
            end: last.end + day,
        };
        let mut rng = fastrand::Rng::with_seed(8);
        dates.extend((0..133).map(|_| last.end + rng.i64(0..day)));
        dates.retain(|t| tonight.contains(*t));
        let known = pieces_from_counts(tonight, &counts, 16, MINUTE, 200).expect("counted");
        assert_covers(tonight, &known.pieces, MINUTE);
        assert!(known.pieces.len() <= 16, "{} pieces", known.pieces.len());
        let expected = dates.len() as f64 / 200.0;
        assert!(
            (known.pages - expected).abs() < 0.02 * expected,
            "{} against {expected}",
            known.pages
        );
        // Every piece ends just under its last full page: as many calls as
        // pages, near enough, and no piece longer than the fair share.
        let calls: Vec<u64> = held(&known.pieces, &dates)
            .iter()
            .map(|n| n.div_ceil(200).max(1))
            .collect();
        let fair = (expected / 16.0).ceil() as u64;
        assert!(calls.iter().all(|c| *c <= fair + 1), "{calls:?}");
        let total: u64 = calls.iter().sum();
        assert!(
            total <= (expected.ceil() * 1.06) as u64 + 1,
            "{total} calls for {expected} pages: {calls:?}"
        );
        let in_hot_hour = known
            .pieces
            .iter()
            .filter(|p| p.start >= hot && p.end <= hot + HOUR)
            .count();
        assert!(
            in_hot_hour >= 10,
            "{in_hot_hour} pieces inside the hot hour"
        );
        // Fewer workers, fewer and longer pieces; one worker, one window.
        let four = pieces_from_counts(tonight, &counts, 4, MINUTE, 200).expect("counted");
        assert_eq!(four.pieces.len(), 4);
        let one = pieces_from_counts(tonight, &counts, 1, MINUTE, 200).expect("counted");
        assert_eq!(one.pieces, vec![tonight]);
    }

    #[test]
    fn counts_that_say_little_plan_the_window_whole_or_not_at_all() {
        let window = TimeRange {
            start: 0,
            end: 30 * 24 * HOUR,
        };
        let count = |start: i64, end: i64, sessions: u64| KnownCount {
            window: TimeRange { start, end },
            sessions,
        };
        assert_eq!(pieces_from_counts(window, &[], 16, MINUTE, 200), None);
        // Last crawled long ago, or over a sliver of tonight's window.
        assert_eq!(
            pieces_from_counts(
                window,
                &[count(-40 * 24 * HOUR, -10 * 24 * HOUR, 9_000)],
                16,
                MINUTE,
                200
            ),
            None
        );
        assert_eq!(
            pieces_from_counts(window, &[count(0, 10 * 24 * HOUR, 9_000)], 16, MINUTE, 200),
            None
        );
        // An empty account stays one window (two calls in all), and so does
        // one of a page or so.
        for sessions in [0, 150, 379] {
            let known =
                pieces_from_counts(window, &[count(0, window.end, sessions)], 16, MINUTE, 200)
                    .expect("counted");
            assert_eq!(known.pieces, vec![window], "{sessions} sessions");
        }
        // A burst on one instant, counted in a window of one slice, is not
        // cut below the slice.
        let burst = [
            count(0, window.end, 4_000),
            count(HOUR, HOUR + MINUTE, 6_000),
        ];
        let known = pieces_from_counts(window, &burst, 64, MINUTE, 200).expect("counted");
        assert_covers(window, &known.pieces, MINUTE);
    }

    #[test]
    fn no_edge_cut_from_a_layout_falls_beside_a_burst_on_one_instant() {
        let window = TimeRange {
            start: 0,
            end: 30 * 24 * HOUR,
        };
        let mut rng = fastrand::Rng::with_seed(11);
        let mut dates: Vec<i64> = (0..20_000)
            .map(|_| rng.i64(window.start..window.end))
            .collect();
        // Bursts wherever an even cut in 16 would put an edge, and beside.
        let bursts: Vec<i64> = (1..16)
            .map(|i| window.end / 16 * i + rng.i64(-HOUR..HOUR) + 500)
            .collect();
        for burst in &bursts {
            dates.extend(std::iter::repeat_n(*burst, 250));
        }
        let counts = StartDateLayout::of(dates).counts(window);
        let known = pieces_from_counts(window, &counts, 16, MINUTE, 200).expect("counted");
        assert_covers(window, &known.pieces, MINUTE);
        for piece in &known.pieces[1..] {
            for burst in &bursts {
                assert!(
                    (piece.start - burst).abs() > 2_000,
                    "an edge at {} beside the burst at {burst}",
                    piece.start
                );
            }
        }
    }

    proptest::proptest! {
        /// Whatever a checkpoint's counts hold (hand-edited, overlapping,
        /// outside the window, absurdly large), the pieces cover the window
        /// exactly, never narrower than the slice, and no more than asked.
        #[test]
        fn any_counts_give_pieces_that_cover_the_window_exactly(
            start in -1_000_000_000_000_i64..2_000_000_000_000,
            width in 1_i64..40 * 24 * HOUR,
            counts in proptest::collection::vec(
                (-50 * 24 * HOUR..50 * 24 * HOUR, -HOUR..10 * 24 * HOUR, proptest::prelude::any::<u64>()),
                0..40,
            ),
            max_pieces in 1_usize..=64,
            slice_s in 1_i64..3_600,
        ) {
            let window = TimeRange { start, end: start + width };
            let counts: Vec<KnownCount> = counts
                .into_iter()
                .map(|(offset, length, sessions)| KnownCount {
                    window: TimeRange { start: start + offset, end: start + offset + length },
                    sessions,
                })
                .collect();
            if let Some(known) = pieces_from_counts(window, &counts, max_pieces, slice_s * 1000, 200) {
                proptest::prop_assert!(!known.pieces.is_empty() && known.pieces.len() <= max_pieces);
                proptest::prop_assert_eq!(known.pieces[0].start, window.start);
                proptest::prop_assert_eq!(known.pieces[known.pieces.len() - 1].end, window.end);
                proptest::prop_assert!(known.pieces.windows(2).all(|w| w[0].end == w[1].start));
                proptest::prop_assert!(
                    known.pieces.len() == 1 || known.pieces.iter().all(|p| p.end - p.start >= slice_s * 1000)
                );
            }
        }
    }
}
