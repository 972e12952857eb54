//! How far an export has got, for whoever watches it: the counters every
//! part of a run bumps (pairs, windows, sessions, calls, throttles, the
//! share of each pair's History window crawled), and the one reporter that
//! shows them: a bar on a terminal (indicatif), or a plain log line every
//! interval when stderr is not a terminal (container logs, where a bar shows
//! nothing), never both. Log lines written while a bar is drawn go through
//! [`LogWriter`], which lifts the bar out of their way.

use std::io::Write;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use crate::shutdown::CancellationToken;

/// How progress is shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProgressMode {
    /// A bar redrawn in place on stderr (a terminal).
    Bar,
    /// An `info` log line (text or JSON, as the logs are) every interval.
    Lines(Duration),
    Off,
}

/// Work units of one (account, region): its History window, shared out
/// among the windows that cover it.
const UNITS_PER_PAIR: u64 = 1_000_000;

/// The run's counters; shared by every pair and read by the reporter.
#[derive(Debug, Default)]
pub struct Progress {
    pairs_total: AtomicU64,
    pairs_done: AtomicU64,
    windows_queued: AtomicU64,
    windows_done: AtomicU64,
    sessions: AtomicU64,
    calls: AtomicU64,
    throttles: AtomicU64,
    work_done: AtomicU64,
}

/// The counters at one moment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Snapshot {
    pub pairs_total: u64,
    pub pairs_done: u64,
    pub windows_queued: u64,
    pub windows_done: u64,
    pub sessions: u64,
    pub calls: u64,
    pub throttles: u64,
    /// Share of the run's work done, 0 to 1.
    pub done: f64,
}

impl Progress {
    pub fn new() -> Arc<Progress> {
        Arc::new(Progress::default())
    }

    /// The run has `pairs` (account, region) pairs to crawl.
    pub fn add_pairs(&self, pairs: usize) {
        self.pairs_total.fetch_add(pairs as u64, Ordering::Relaxed);
    }

    /// A pair starts: its windows are credited through the handle, and the
    /// rest of its share when the handle is dropped (done or failed).
    pub fn pair(self: &Arc<Progress>) -> PairProgress {
        PairProgress {
            run: self.clone(),
            credited: AtomicU64::new(0),
        }
    }

    pub fn snapshot(&self) -> Snapshot {
        let pairs_total = self.pairs_total.load(Ordering::Relaxed);
        let work = self.work_done.load(Ordering::Relaxed);
        Snapshot {
            pairs_total,
            pairs_done: self.pairs_done.load(Ordering::Relaxed),
            windows_queued: self.windows_queued.load(Ordering::Relaxed),
            windows_done: self.windows_done.load(Ordering::Relaxed),
            sessions: self.sessions.load(Ordering::Relaxed),
            calls: self.calls.load(Ordering::Relaxed),
            throttles: self.throttles.load(Ordering::Relaxed),
            done: if pairs_total == 0 {
                0.0
            } else {
                (work as f64 / (pairs_total * UNITS_PER_PAIR) as f64).min(1.0)
            },
        }
    }
}

/// One pair's share of the run's progress.
#[derive(Debug)]
pub struct PairProgress {
    run: Arc<Progress>,
    credited: AtomicU64,
}

impl PairProgress {
    pub fn windows_queued(&self, windows: usize) {
        self.run
            .windows_queued
            .fetch_add(windows as u64, Ordering::Relaxed);
    }

    /// A window is complete; `share` is the part of the pair's History
    /// window it covered (0 for Active, which is not a time window).
    pub fn window_done(&self, share: f64) {
        self.run.windows_done.fetch_add(1, Ordering::Relaxed);
        let units = (share.clamp(0.0, 1.0) * UNITS_PER_PAIR as f64) as u64;
        let before = self.credited.fetch_add(units, Ordering::Relaxed);
        // Never more than the pair's share, whatever rounding does.
        let granted = units.min(UNITS_PER_PAIR.saturating_sub(before));
        self.run.work_done.fetch_add(granted, Ordering::Relaxed);
    }

    /// One DescribeSessions attempt, throttled or not.
    pub fn call(&self, throttled: bool) {
        self.run.calls.fetch_add(1, Ordering::Relaxed);
        if throttled {
            self.run.throttles.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub fn sessions(&self, rows: usize) {
        self.run.sessions.fetch_add(rows as u64, Ordering::Relaxed);
    }
}

impl Drop for PairProgress {
    fn drop(&mut self) {
        let credited = self.credited.load(Ordering::Relaxed).min(UNITS_PER_PAIR);
        self.run
            .work_done
            .fetch_add(UNITS_PER_PAIR - credited, Ordering::Relaxed);
        self.run.pairs_done.fetch_add(1, Ordering::Relaxed);
    }
}

/// Seconds left at the pace so far, once there is a pace to go by.
fn eta(snapshot: &Snapshot, elapsed: Duration) -> Option<Duration> {
    (snapshot.done >= 0.01 && snapshot.done < 1.0)
        .then(|| elapsed.mul_f64((1.0 - snapshot.done) / snapshot.done))
}

/// What the bar says after its ETA.
fn summary(s: &Snapshot) -> String {
    format!(
        "{} sessions, {} calls, {} throttled, windows {}/{}, pairs {}/{}",
        s.sessions,
        s.calls,
        s.throttles,
        s.windows_done,
        s.windows_queued,
        s.pairs_done,
        s.pairs_total
    )
}

/// The bar being drawn, if any: [`LogWriter`] lifts it out of log lines' way.
static BAR: Mutex<Option<indicatif::ProgressBar>> = Mutex::new(None);

/// Shows `progress` as `mode` says until `stop` is cancelled; the bar is
/// cleared then (the run's summary follows it).
pub fn report(
    progress: Arc<Progress>,
    mode: ProgressMode,
    stop: CancellationToken,
) -> Option<tokio::task::JoinHandle<()>> {
    let started = Instant::now();
    match mode {
        ProgressMode::Off => None,
        ProgressMode::Lines(every) => Some(tokio::spawn(async move {
            let mut ticks = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
            loop {
                tokio::select! {
                    _ = ticks.tick() => {}
                    () = stop.cancelled() => return,
                }
                let s = progress.snapshot();
                tracing::info!(
                    pairs_done = s.pairs_done,
                    pairs_total = s.pairs_total,
                    windows_done = s.windows_done,
                    windows_queued = s.windows_queued,
                    sessions = s.sessions,
                    calls = s.calls,
                    throttled = s.throttles,
                    percent = (s.done * 1000.0).round() / 10.0,
                    eta_seconds = eta(&s, started.elapsed()).map(|d| d.as_secs()),
                    "progress"
                );
            }
        })),
        ProgressMode::Bar => {
            let bar = indicatif::ProgressBar::with_draw_target(
                Some(1000),
                indicatif::ProgressDrawTarget::stderr_with_hz(4),
            );
            let style = indicatif::ProgressStyle::with_template(
                "{spinner} {elapsed_precise} [{bar:20}] {percent:>3}% ETA {wide_msg}",
            )
            .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
            .progress_chars("=> ");
            bar.set_style(style);
            *BAR.lock().unwrap_or_else(PoisonError::into_inner) = Some(bar.clone());
            Some(tokio::spawn(async move {
                let mut ticks = tokio::time::interval(Duration::from_millis(250));
                loop {
                    tokio::select! {
                        _ = ticks.tick() => {}
                        () = stop.cancelled() => break,
                    }
                    let s = progress.snapshot();
                    bar.set_position((s.done * 1000.0) as u64);
                    let left = eta(&s, started.elapsed()).map_or("--".to_owned(), |d| {
                        format!(
                            "{}",
                            humantime::format_duration(Duration::from_secs(d.as_secs()))
                        )
                    });
                    bar.set_message(format!("{left}, {}", summary(&s)));
                }
                BAR.lock().unwrap_or_else(PoisonError::into_inner).take();
                bar.finish_and_clear();
            }))
        }
    }
}

/// stderr for the logs: while a bar is drawn, each line is written with the
/// bar lifted, so lines and bar never garble each other.
#[derive(Debug, Clone, Copy, Default)]
pub struct LogWriter;

impl Write for LogWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        let bar = BAR.lock().unwrap_or_else(PoisonError::into_inner).clone();
        match bar {
            Some(bar) => bar.suspend(|| std::io::stderr().write_all(buf))?,
            None => std::io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        std::io::stderr().flush()
    }
}

impl<'a> tracing_subscriber::fmt::MakeWriter<'a> for LogWriter {
    type Writer = LogWriter;
    fn make_writer(&'a self) -> LogWriter {
        LogWriter
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_pair_counts_its_windows_share_and_the_rest_when_it_ends() {
        let run = Progress::new();
        run.add_pairs(2);
        let pair = run.pair();
        pair.windows_queued(3);
        pair.window_done(0.0);
        pair.window_done(0.25);
        let s = run.snapshot();
        assert_eq!((s.windows_done, s.windows_queued, s.pairs_done), (2, 3, 0));
        assert!((s.done - 0.125).abs() < 1e-9, "{s:?}");
        // Rounding or a resumed window never credits more than the pair.
        pair.window_done(0.9);
        drop(pair);
        let s = run.snapshot();
        assert_eq!(s.pairs_done, 1);
        assert!((s.done - 0.5).abs() < 1e-9, "{s:?}");
    }

    #[test]
    fn calls_throttles_and_sessions_add_up() {
        let run = Progress::new();
        run.add_pairs(1);
        let pair = run.pair();
        pair.call(false);
        pair.call(true);
        pair.sessions(200);
        let s = run.snapshot();
        assert_eq!((s.calls, s.throttles, s.sessions), (2, 1, 200));
    }

    #[test]
    fn the_eta_waits_for_a_pace_and_scales_what_is_left() {
        let mut s = Progress::new().snapshot();
        assert_eq!(eta(&s, Duration::from_secs(10)), None);
        s.done = 0.25;
        assert_eq!(
            eta(&s, Duration::from_secs(10)),
            Some(Duration::from_secs(30))
        );
        s.done = 1.0;
        assert_eq!(eta(&s, Duration::from_secs(10)), None);
    }
}
