//! Pacing: one [`Pacer`] per (account, region) keeps DescribeSessions calls
//! under the rate the service allows, which AWS does not publish and which
//! other tools in the same account share. It learns the rate from
//! throttling, AIMD-style, and every attempt (retries included) waits for it.
//!
//! - **Start.** No rate yet, but a cap on calls in flight that starts at
//!   [`START_IN_FLIGHT`] and grows by one per success (doubling every round
//!   trip, as TCP's slow start does), so a fan-out to many windows does not
//!   open with a storm.
//! - **First throttle.** The cap is lifted and the rate becomes half of
//!   what got through lately (successes over the last second, or over the
//!   crawl's age when it is younger: the first throttle often comes within a
//!   few round trips, whose count a burst allowance inflates); from now on
//!   the rate alone governs. It then probes upwards, doubling every
//!   [`PROBE_DOUBLING`] while calls wait for it, until the next throttle
//!   settles it at [`CUT`] of what got through (never below half the
//!   probe's rate).
//! - **Steady.** Each success raises the rate by [`GROWTH`] (about 1.11x in
//!   53 successes); a throttle of a call sent after the last cut cuts it to
//!   [`CUT`]. Calls already in flight at a cut answer the old rate, so they do
//!   not cut again. The rate then saws between 0.9 and 1 of the allowed rate,
//!   about 0.95 on average, with about one call in 50 throttled.
//! - **Untested rates.** The rate grows (probe or steady) only on calls
//!   that waited for their slot: a crawl using less than the rate (one
//!   window paging alone) never meets the limit, and a rate grown unopposed
//!   meanwhile would be a storm of throttles once the windows split.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

/// Calls in flight allowed before anything is known of the rate.
pub const START_IN_FLIGHT: usize = 2;
/// The share of the rate kept when a call is throttled.
pub const CUT: f64 = 0.9;
/// The rate's growth per successful call, once steady.
pub const GROWTH: f64 = 0.002;
/// While probing, the rate doubles this often.
pub const PROBE_DOUBLING: Duration = Duration::from_millis(250);
/// The slowest the crawl ever goes, in calls per second.
const MIN_RATE: f64 = 0.2;
/// How far back successes are counted to learn the first rate.
const MEASURE: Duration = Duration::from_secs(1);

/// The pace of calls to one (account, region).
#[derive(Debug)]
pub struct Pacer {
    state: Mutex<State>,
}

#[derive(Debug)]
struct State {
    /// Calls per second; None until the first throttle.
    rate: Option<f64>,
    /// The earliest time the next call may start (with a rate).
    next_slot: Instant,
    /// Calls in flight, and how many may be before the first throttle.
    in_flight: usize,
    in_flight_cap: usize,
    /// When the rate was last cut; throttles of calls sent before it are
    /// answers to the old rate.
    last_cut: Option<Instant>,
    /// When recent calls succeeded, for the rate after a probe.
    successes: VecDeque<Instant>,
    /// When the first call started: a crawl younger than [`MEASURE`]
    /// measures what got through over its own age.
    first_call: Option<Instant>,
    /// Average time a call takes, for how many calls in flight the rate
    /// can use.
    latency: Option<Duration>,
    /// Probing upwards since this instant (after the first throttle, until
    /// the second).
    probing_since: Option<Instant>,
    /// The rate when probing started.
    probe_base: f64,
}

/// What the pacer is told about a call's outcome.
impl State {
    /// The calls per second that succeeded lately: over the last
    /// [`MEASURE`], or over the crawl's age when it is younger (the first
    /// throttle often comes within the first round trips), never over less
    /// than a round trip.
    fn let_through(&self, now: Instant) -> f64 {
        let age = self
            .first_call
            .map_or(MEASURE, |first| now.saturating_duration_since(first));
        let span = age
            .min(MEASURE)
            .max(self.latency.unwrap_or(MEASURE))
            .max(Duration::from_millis(1));
        self.successes.len() as f64 / span.as_secs_f64()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    Succeeded,
    Throttled,
    /// Failed otherwise (a server or transport error): says nothing of the
    /// rate.
    Failed,
}

/// A call's place in the pace: its start, to report its outcome with.
#[derive(Debug)]
#[must_use = "report the call's outcome with Pacer::finish"]
pub struct Slot {
    /// When the call may start.
    sent: Instant,
    /// When its start was decided: a slot decided before a cut was spaced
    /// by the old rate, so its throttle is no news.
    decided: Instant,
}

impl Default for Pacer {
    fn default() -> Pacer {
        Pacer::new()
    }
}

impl Pacer {
    pub fn new() -> Pacer {
        Pacer {
            state: Mutex::new(State {
                rate: None,
                next_slot: Instant::now(),
                in_flight: 0,
                in_flight_cap: START_IN_FLIGHT,
                last_cut: None,
                successes: VecDeque::new(),
                first_call: None,
                latency: None,
                probing_since: None,
                probe_base: 0.0,
            }),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until a call may start. Cancel-safe: a dropped wait takes no
    /// place in flight.
    pub async fn start(&self) -> Slot {
        loop {
            let now = Instant::now();
            let wait = {
                let mut state = self.lock();
                match state.rate {
                    Some(rate) => {
                        let interval = Duration::from_secs_f64(1.0 / rate);
                        let slot = state.next_slot.max(now);
                        if slot > now + interval {
                            // A slot claimed far ahead would hold this call
                            // to today's rate however the rate moves: look
                            // again when it is near.
                            Err(slot - interval)
                        } else {
                            state.next_slot = slot + interval;
                            state.in_flight += 1;
                            Ok(slot)
                        }
                    }
                    None if state.in_flight < state.in_flight_cap => {
                        state.in_flight += 1;
                        Ok(now)
                    }
                    // Full: look again shortly (a finished call frees a place).
                    None => Err(now + Duration::from_millis(5)),
                }
            };
            match wait {
                Ok(slot) => {
                    self.lock().first_call.get_or_insert(slot);
                    tokio::time::sleep_until(slot).await;
                    return Slot {
                        sent: slot,
                        decided: now,
                    };
                }
                Err(again) => tokio::time::sleep_until(again).await,
            }
        }
    }

    /// Reports how a call that started at `slot` ended.
    pub fn finish(&self, slot: Slot, outcome: Outcome) {
        let mut state = self.lock();
        let now = Instant::now();
        state.in_flight = state.in_flight.saturating_sub(1);
        let took = now.saturating_duration_since(slot.sent);
        state.latency = Some(match state.latency {
            Some(average) => average.mul_f64(0.8) + took.mul_f64(0.2),
            None => took,
        });
        match outcome {
            Outcome::Succeeded => {
                state.successes.push_back(now);
                while state
                    .successes
                    .front()
                    .is_some_and(|t| now.duration_since(*t) > MEASURE)
                {
                    state.successes.pop_front();
                }
                // A call that did not wait for its slot was not held back
                // by the rate: the crawl used less than it (one window
                // paging alone), so the rate was not tested. Growing it
                // anyway would let it run far past the limit unopposed, a
                // storm of throttles once the windows split.
                let paced = slot.sent > slot.decided;
                match (state.rate, state.probing_since) {
                    (Some(_), Some(since)) if paced => {
                        let doublings =
                            now.duration_since(since).as_secs_f64() / PROBE_DOUBLING.as_secs_f64();
                        state.rate = Some(state.probe_base * doublings.exp2());
                    }
                    (Some(rate), Some(_)) => {
                        // The probe holds here and goes on when calls wait.
                        state.probe_base = rate;
                        state.probing_since = Some(now);
                    }
                    (Some(rate), None) if paced => state.rate = Some(rate * (1.0 + GROWTH)),
                    (Some(_), None) => {}
                    (None, _) => state.in_flight_cap += 1,
                }
            }
            Outcome::Throttled => {
                if state.last_cut.is_some_and(|cut| slot.decided <= cut) {
                    return;
                }
                let let_through = state.let_through(now);
                let rate = match (state.rate, state.probing_since) {
                    // The first throttle: start probing from half of what got
                    // through (measured over a young crawl's few round trips,
                    // which a burst allowance inflates).
                    (None, _) => {
                        state.probing_since = Some(now);
                        state.probe_base = (let_through * 0.5).max(MIN_RATE);
                        state.probe_base
                    }
                    // The probe overshot: settle below what got through.
                    (Some(rate), Some(_)) => {
                        state.probing_since = None;
                        let_through.max(rate * 0.5) * CUT
                    }
                    (Some(rate), None) => rate * CUT,
                };
                let rate = rate.max(MIN_RATE);
                tracing::debug!(rate, let_through, "throttled: pacing DescribeSessions");
                state.rate = Some(rate);
                state.last_cut = Some(now);
                // The throttle means the service's bucket is empty: let it
                // refill for one interval before the next call.
                state.next_slot = state
                    .next_slot
                    .max(now + Duration::from_secs_f64(1.0 / rate));
            }
            Outcome::Failed => {}
        }
    }

    /// How many calls in flight are worth having, of `concurrency`: all of
    /// them until a rate is learned, then what the rate keeps busy (rate x
    /// latency, with room for jitter once the rate is settled). Splitting
    /// windows for more workers than that only costs calls.
    pub fn useful_concurrency(&self, concurrency: usize) -> usize {
        let state = self.lock();
        match (state.rate, state.latency) {
            (Some(rate), Some(latency)) => {
                // While probing, the rate is a guess the next throttle may
                // refute: enough windows to use it, no room for jitter
                // (each window split costs calls).
                let room = if state.probing_since.is_some() {
                    1.0
                } else {
                    1.5
                };
                let busy = (rate * latency.as_secs_f64() * room).ceil() as usize;
                busy.clamp(1, concurrency)
            }
            _ => concurrency,
        }
    }

    /// The learned rate in calls per second, None while nothing throttled.
    pub fn rate(&self) -> Option<f64> {
        self.lock().rate
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test(start_paused = true)]
    async fn calls_start_slowly_then_follow_the_rate_learned_from_throttling() {
        let pacer = Pacer::new();
        // Before any throttle: two in flight, then one more per success.
        let a = pacer.start().await;
        let b = pacer.start().await;
        let third = tokio::time::timeout(Duration::from_millis(50), pacer.start()).await;
        assert!(third.is_err(), "a third call waits for a place");
        pacer.finish(a, Outcome::Succeeded);
        let c = pacer.start().await;
        let d = pacer.start().await;
        assert_eq!(pacer.rate(), None);

        // The first throttle sets the rate from what succeeded, and probes:
        // one success in the crawl's first 50 ms is 20 calls/s, halved.
        pacer.finish(b, Outcome::Throttled);
        let first = pacer.rate().expect("a rate");
        assert!((first - 10.0).abs() < 1e-9, "{first}");
        // A call sent before that cut does not cut again.
        pacer.finish(c, Outcome::Throttled);
        assert_eq!(pacer.rate(), Some(first));
        // A call that started before the rate was not held back by it: the
        // probe holds.
        pacer.finish(d, Outcome::Succeeded);
        assert_eq!(pacer.rate(), Some(first));
        let held = Instant::now();
        // A call that waits for its slot grows the probe, doubling every
        // PROBE_DOUBLING.
        let x = pacer.start().await;
        let y = pacer.start().await;
        assert!(y.sent > y.decided, "the second call waits for its slot");
        pacer.finish(x, Outcome::Failed);
        tokio::time::advance(PROBE_DOUBLING).await;
        pacer.finish(y, Outcome::Succeeded);
        let probed = pacer.rate().expect("a rate");
        let doublings = held.elapsed().as_secs_f64() / PROBE_DOUBLING.as_secs_f64();
        assert!(doublings >= 1.0);
        assert!(
            (probed - first * doublings.exp2()).abs() < 1e-6,
            "doubles while probing: {probed}"
        );

        // Calls are spaced by the rate.
        let before = Instant::now();
        let e = pacer.start().await;
        let f = pacer.start().await;
        assert!(f.sent.duration_since(e.sent) >= Duration::from_secs_f64(0.99 / probed));
        assert!(e.sent >= before);
        // A throttle of a call sent after the cut ends the probe below what
        // got through (two successes in the crawl's 0.3 s, under 7 calls/s),
        // but never below half the probe's rate.
        pacer.finish(f, Outcome::Throttled);
        let settled = pacer.rate().expect("a rate");
        assert!(
            (settled - probed * 0.5 * CUT).abs() < 1e-6,
            "{settled} after {probed}"
        );
        pacer.finish(e, Outcome::Failed);
        assert_eq!(
            pacer.rate(),
            Some(settled),
            "other failures say nothing of the rate"
        );
        // Steady: successes raise the rate a little, a throttle cuts it.
        let g = pacer.start().await;
        pacer.finish(g, Outcome::Succeeded);
        let raised = pacer.rate().expect("a rate");
        assert!((raised - settled * (1.0 + GROWTH)).abs() < 1e-9);
        let h = pacer.start().await;
        pacer.finish(h, Outcome::Throttled);
        assert!((pacer.rate().expect("a rate") - raised * CUT).abs() < 1e-9);
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_the_crawl_does_not_use_does_not_grow_and_asks_for_no_windows() {
        let pacer = Pacer::new();
        assert_eq!(pacer.useful_concurrency(16), 16, "all, before any throttle");
        let a = pacer.start().await;
        let b = pacer.start().await;
        tokio::time::advance(Duration::from_millis(100)).await;
        pacer.finish(a, Outcome::Succeeded);
        // One success in 100 ms: 10 calls/s got through, the probe starts
        // at 5; at 100 ms a call, one window keeps that busy.
        pacer.finish(b, Outcome::Throttled);
        let probe = pacer.rate().expect("a rate");
        assert!((probe - 5.0).abs() < 1e-9, "{probe}");
        assert_eq!(pacer.useful_concurrency(16), 1);
        // A second later a call finds its slot free (one window paging
        // alone uses less than the rate): however long the probe has run,
        // the rate stays where it was.
        tokio::time::advance(Duration::from_secs(1)).await;
        let c = pacer.start().await;
        assert_eq!(c.sent, c.decided);
        tokio::time::advance(Duration::from_millis(100)).await;
        pacer.finish(c, Outcome::Succeeded);
        assert_eq!(pacer.rate(), Some(probe));
        assert_eq!(pacer.useful_concurrency(16), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn waiting_calls_take_up_a_faster_rate_instead_of_slots_claimed_at_the_old_one() {
        let pacer = Pacer::new();
        let a = pacer.start().await;
        let b = pacer.start().await;
        tokio::time::advance(Duration::from_millis(100)).await;
        pacer.finish(a, Outcome::Succeeded);
        pacer.finish(b, Outcome::Throttled);
        // 16 windows wait at 5 calls/s. Had each claimed its slot, the last
        // would be bound to start 3 s from now whatever the rate became;
        // at most two slots ahead are claimed.
        let mut waiting: futures_util::stream::FuturesUnordered<_> =
            (0..16).map(|_| pacer.start()).collect();
        let _ = tokio::time::timeout(Duration::from_millis(1), async {
            while futures_util::StreamExt::next(&mut waiting).await.is_some() {}
        })
        .await;
        let ahead = pacer
            .lock()
            .next_slot
            .saturating_duration_since(Instant::now());
        assert!(ahead <= Duration::from_millis(400), "{ahead:?}");
    }
}
