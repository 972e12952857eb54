//! Pacing: one [`Pacer`] per (account, region) keeps DescribeSessions calls
//! under the rate the service allows, which AWS does not publish and which
//! other tools in the same account share. It learns the rate from
//! throttling, AIMD-style, and every attempt (retries included) waits for it.
//!
//! - **Start.** No rate yet, but a cap on calls in flight that starts at
//!   [`START_IN_FLIGHT`] and grows by one per success (doubling every round
//!   trip, as TCP's slow start does), so a fan-out to many windows does not
//!   open with a storm. The cap's calls leave spread over half a round trip
//!   (as TCP paces its window), so the first throttle stops a fan-out
//!   instead of meeting all of it at once. Its first few leave on a ladder
//!   of halving gaps (a quarter of a round trip, an eighth, ..., never under
//!   [`FAN_OUT_GUARD`], since a throttle takes a network round trip to come
//!   back), so that the gap the first throttle meets says which rate it is.
//! - **First throttle.** The cap is lifted and the rate becomes what the
//!   call before the throttled one proved, when the throttled call was on
//!   a rung narrower than the one before: the service admitted that call
//!   at its gap, so it allows at least one call per gap (the first
//!   throttle of a fan-out otherwise says the same at 10 calls/s as at
//!   80). Otherwise, or if that is less, the rate becomes half of what got
//!   through lately (successes over the last second, or over the crawl's
//!   age when it is younger: the first throttle often comes within a few
//!   round trips, whose count a burst allowance inflates). A burst
//!   allowance admits a rung whatever the rate, so the first call the
//!   ladder's rate spaces tests it: if that one is throttled too, the rate
//!   falls back to that half. From now on the rate alone governs. It then
//!   probes upwards: each call that waited for its slot and succeeded
//!   raises it one step, so that it doubles every round trip (in no fewer
//!   than [`PROBE_CALLS`] calls, and no more often than every
//!   [`PROBE_DOUBLING`]). The probe moves with the calls it sends.
//! - **End of the probe.** The next throttle settles the rate one step below
//!   the rate that spaced the throttled call: the last step that got
//!   through, at or just below the allowed rate when the service allows no
//!   burst. A burst allowance hides the limit until it is spent, so the
//!   probe overshoots further; the steady cuts bring it down.
//! - **Steady.** Each success raises the rate by [`GROWTH`] (about 1.11x in
//!   105 successes); a throttle of a call sent after the last cut cuts it to
//!   [`CUT`]. Deeper when the rate is clearly above what gets through (less
//!   got through over the last second, or since the first throttle when
//!   that is sooner, than [`CUT`] of it): by the share of the calls sent
//!   since the last cut that this throttle shows over the limit, down to
//!   [`DEEPEST_CUT`]. A rate learned in a burst allowance thus comes down in
//!   a few cuts, not in many. Never on the first throttle after the probe:
//!   the probe settled at or just above the limit, and a call late by a
//!   timer tick then the next on time is no storm. Calls
//!   already in flight at a cut answer the old rate, so they do not cut
//!   again. The rate then saws between 0.9 and 1 of the allowed rate, about
//!   0.95 on average, with about one call in 100 throttled.
//! - **Untested rates.** The rate grows (probe or steady) only on calls
//!   that waited for their slot: a crawl using less than the rate (one
//!   window paging alone) never meets the limit, and a rate grown unopposed
//!   meanwhile would be a storm of throttles once the windows split.
//! - **Slots.** A call is spaced by the rate of the moment it is due, and
//!   calls waiting are woken when the rate rises, so a rising rate reaches
//!   them at once rather than a slot later.

use std::collections::VecDeque;
use std::sync::Mutex;
use std::time::Duration;

use tokio::sync::Notify;
use tokio::time::Instant;

/// Calls in flight allowed before anything is known of the rate. The
/// spread over half a round trip, not this cap, is what keeps a fan-out
/// from meeting a limit all at once (the first throttle is answered before
/// the next call leaves), so it is as large as that allows: 2 cost a 20,000
/// session crawl at 16 about 0.2 s of ramp and no throttle less without a
/// burst allowance; with one that a fan-out spends at once, 16 cost about
/// one throttle more (see BENCHMARKS.md).
pub const START_IN_FLIGHT: usize = 16;
/// Before the first throttle, a call that would be the 2nd to the
/// [`FAN_OUT_GUARDED`]th in flight leaves on the ladder (a quarter of a
/// round trip after the one before, then an eighth, ...), and at least this
/// long after it: a throttle comes back after a network round trip, and at
/// the spread alone (3 ms at 100 ms a call) five more calls left within a
/// 20 ms one, all throttled. The ladder costs a fan-out at 100 ms a call
/// 68 ms, the guard alone cost it 30 (see BENCHMARKS.md).
pub const FAN_OUT_GUARD: Duration = Duration::from_millis(10);
/// See [`FAN_OUT_GUARD`]: two calls more than the ladder's rungs above the
/// guard (at 100 ms a call), so that a throttle of the last rung, back a
/// network round trip later, stops the fan-out before its spread.
pub const FAN_OUT_GUARDED: usize = 6;
/// The share of the rate kept when a call is throttled.
pub const CUT: f64 = 0.9;
/// The deepest a steady cut goes on the share of calls throttled since the
/// last one (see `Pacer::finish`): a probe that a burst allowance hid from
/// the limit ends at twice the allowed rate or more, and 0.8 took four cuts
/// (four throttles) to come down from there, 0.65 takes two or three (see
/// BENCHMARKS.md).
pub const DEEPEST_CUT: f64 = 0.65;
/// The rate's growth per successful call, once steady. The rate saws
/// between [`CUT`] and 1 of the allowed rate whatever the growth, so the
/// average pace does not depend on it, but the throttles do: one per climb
/// back, about one call in 100 at 0.1%. At 0.2% a crawl of 20,000 sessions
/// at 10 calls/s with a burst allowance of 5 threw 7 of 121 calls, over 5%
/// (see BENCHMARKS.md).
pub const GROWTH: f64 = 0.001;
/// While probing, the rate doubles in no fewer than this many calls that
/// waited for their slot: each step is then at most 1.26x, which is how far
/// past the allowed rate the probe goes.
pub const PROBE_CALLS: f64 = 3.0;
/// Nor more often than this, however short the round trip: a burst
/// allowance hides the limit until it is spent, and a faster probe would be
/// further past it by then.
pub const PROBE_DOUBLING: Duration = Duration::from_millis(250);
/// The slowest the crawl ever goes, in calls per second.
const MIN_RATE: f64 = 0.2;
/// How far back successes are counted to learn the first rate.
const MEASURE: Duration = Duration::from_secs(1);

/// The pace of calls to one (account, region).
#[derive(Debug)]
pub struct Pacer {
    state: Mutex<State>,
    /// Told when the rate rises, so that calls waiting for their slot take
    /// up the new rate at once.
    rate_rose: Notify,
}

#[derive(Debug)]
struct State {
    /// Calls per second; None until the first throttle.
    rate: Option<f64>,
    /// When the last call started: the next is due one interval of the
    /// current rate later (before the first throttle, a spread of the cap).
    last_sent: Instant,
    /// How long after the one before it the last call started.
    last_gap: Duration,
    /// The rung the last call left on, when it was on the fan-out's ladder.
    last_rung: Option<Duration>,
    /// No call before this (the service's bucket refilling after a
    /// throttle).
    not_before: Instant,
    /// Calls in flight, and how many may be before the first throttle.
    in_flight: usize,
    in_flight_cap: usize,
    /// When the rate was last cut; throttles of calls sent before it are
    /// answers to the old rate.
    last_cut: Option<Instant>,
    /// When recent calls succeeded: what got through lately, for the rate
    /// the probe starts from and whether a steady cut goes deeper.
    successes: VecDeque<Instant>,
    /// Since when successes count: the first call, then the first
    /// throttle (a burst allowance spent before it says nothing of the
    /// rate). What got through is measured over the time since, when that
    /// is shorter than [`MEASURE`].
    measured_from: Option<Instant>,
    /// Average time a call takes, for how many calls in flight the rate
    /// can use.
    latency: Option<Duration>,
    /// Probing upwards (after the first throttle, until the second).
    probing: bool,
    /// Calls sent at a rate since the last cut.
    sent_since_cut: u32,
    /// The probe has just ended: the next throttle cuts by [`CUT`] only.
    settled_by_probe: bool,
    /// A first rate the ladder gave is a guess until a call it spaced gets
    /// through: a burst allowance may have admitted the call before the
    /// throttled one. If the first such call is throttled, the rate falls
    /// back to this, half of what got through at the first throttle.
    start_unproven: Option<f64>,
    /// Whether the call that tests the ladder's rate has left.
    start_test_sent: bool,
}

impl State {
    /// The probe's growth per call that waited and succeeded at `rate`:
    /// doubling every round trip (the calls a round trip holds at this
    /// rate), in no fewer than [`PROBE_CALLS`] calls and no less than
    /// [`PROBE_DOUBLING`].
    fn probe_step(&self, rate: f64) -> f64 {
        let round_trip = self.latency.unwrap_or_default().max(PROBE_DOUBLING);
        let per_doubling = (rate * round_trip.as_secs_f64()).max(PROBE_CALLS);
        (1.0 / per_doubling).exp2()
    }

    /// The calls per second that succeeded lately: over the last
    /// [`MEASURE`], or since `measured_from` when that is sooner (the first
    /// throttle often comes within the first round trips, and the probe
    /// ends within a second of it), never over less than a round trip.
    fn let_through(&self, now: Instant) -> f64 {
        let age = self
            .measured_from
            .map_or(MEASURE, |from| now.saturating_duration_since(from));
        let span = age
            .min(MEASURE)
            .max(self.latency.unwrap_or(MEASURE))
            .max(Duration::from_millis(1));
        // Successes are dropped as they age only when one comes.
        let stale = self
            .successes
            .partition_point(|t| now.saturating_duration_since(*t) > MEASURE);
        (self.successes.len() - stale) as f64 / span.as_secs_f64()
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
    /// When the call started: a call sent before a cut was spaced by the
    /// old rate, so its throttle is no news.
    sent: Instant,
    /// Whether it waited for the rate (a call that did not was not held
    /// back by it).
    waited: bool,
    /// The rate that spaced it; None before the first throttle.
    rate: Option<f64>,
    /// For a call on the fan-out's ladder: the rate the call before it
    /// proves the service allows if the service admitted that one (one
    /// call per its gap, against a bucket of one call).
    proven_before: Option<f64>,
    /// The first call spaced by a rate the ladder gave: its outcome proves
    /// or refutes that rate.
    tests_start: bool,
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
                last_sent: Instant::now(),
                last_gap: Duration::ZERO,
                last_rung: None,
                not_before: Instant::now(),
                in_flight: 0,
                in_flight_cap: START_IN_FLIGHT,
                last_cut: None,
                successes: VecDeque::new(),
                measured_from: None,
                latency: None,
                probing: false,
                sent_since_cut: 0,
                settled_by_probe: false,
                start_unproven: None,
                start_test_sent: false,
            }),
            rate_rose: Notify::new(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until a call may start. Cancel-safe: a dropped wait takes no
    /// place in flight.
    pub async fn start(&self) -> Slot {
        let asked = Instant::now();
        loop {
            // Registered before the check, so a rise in between wakes it.
            let rate_rose = self.rate_rose.notified();
            let now = Instant::now();
            let wait = {
                let mut state = self.lock();
                match state.rate {
                    Some(rate) => {
                        // Spaced by the rate of the moment it is due, not of
                        // the moment it began to wait: a rate that rises
                        // reaches calls already waiting.
                        let due = (state.last_sent + Duration::from_secs_f64(1.0 / rate))
                            .max(state.not_before);
                        if due > now {
                            Err(due)
                        } else {
                            state.last_sent = now;
                            state.in_flight += 1;
                            state.sent_since_cut += 1;
                            let tests_start = state.start_unproven.is_some()
                                && !std::mem::replace(&mut state.start_test_sent, true);
                            Ok((Some(rate), None, tests_start))
                        }
                    }
                    None if state.in_flight < state.in_flight_cap => {
                        // The cap's calls spread over a round trip, as TCP
                        // paces its window: the first throttle then stops
                        // the rest of a fan-out instead of meeting all of it.
                        let spread = state
                            .latency
                            .map_or(Duration::ZERO, |l| l / (2 * state.in_flight_cap as u32));
                        // The first calls of a fan-out leave on a ladder
                        // of halving gaps: the gap the first throttle meets
                        // then says which rate the service allows. And
                        // further apart than the spread: a throttle that
                        // takes a network round trip then stops the fan-out
                        // after one or two more calls, not a handful.
                        let rung = (1..FAN_OUT_GUARDED).contains(&state.in_flight).then(|| {
                            let quarter = state.latency.unwrap_or_default() / 4;
                            (quarter / (1 << (state.in_flight - 1))).max(FAN_OUT_GUARD)
                        });
                        let due = state.last_sent + rung.map_or(spread, |gap| gap.max(spread));
                        if due > now {
                            Err(due)
                        } else {
                            // Only a rung narrower than the one before it
                            // tells the rate apart from a burst allowance:
                            // the guard's even gaps, which a burst admits
                            // alike, prove nothing. Rungs are compared as
                            // planned: a timer that woke a millisecond late
                            // made the gap before a guard's wider, and a
                            // burst allowance of 5 at 10 calls/s read as
                            // 87 (see BENCHMARKS.md). What the call before
                            // proves is the gap it actually left at.
                            let before = state.last_rung.unwrap_or(state.last_gap);
                            let proven_before = rung
                                .filter(|gap| *gap < before.mul_f64(0.9))
                                .map(|_| 1.0 / state.last_gap.as_secs_f64());
                            state.last_rung = rung;
                            state.last_gap = now.saturating_duration_since(state.last_sent);
                            state.last_sent = now;
                            state.in_flight += 1;
                            Ok((None, proven_before, false))
                        }
                    }
                    // Full: look again shortly (a finished call frees a place).
                    None => Err(now + Duration::from_millis(5)),
                }
            };
            match wait {
                Ok((rate, proven_before, tests_start)) => {
                    self.lock().measured_from.get_or_insert(now);
                    return Slot {
                        sent: now,
                        waited: now > asked,
                        rate,
                        proven_before,
                        tests_start,
                    };
                }
                Err(due) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(due) => {}
                        () = rate_rose => {}
                    }
                }
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
                if slot.tests_start {
                    state.start_unproven = None;
                }
                if state.measured_from.is_none_or(|from| slot.sent >= from) {
                    state.successes.push_back(now);
                }
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
                let paced = slot.waited;
                match (state.rate, state.probing) {
                    (Some(rate), true) if paced => {
                        state.rate = Some(rate * state.probe_step(rate));
                        drop(state);
                        self.rate_rose.notify_waiters();
                    }
                    (Some(rate), false) if paced => {
                        state.rate = Some(rate * (1.0 + GROWTH));
                        drop(state);
                        self.rate_rose.notify_waiters();
                    }
                    (Some(_), _) => {}
                    (None, _) => state.in_flight_cap += 1,
                }
            }
            Outcome::Throttled => {
                if state.last_cut.is_some_and(|cut| slot.sent <= cut) {
                    return;
                }
                let let_through = state.let_through(now);
                let rate = match (state.rate, state.probing) {
                    // The first throttle: start probing from what the call
                    // before a throttled one on the ladder proved, or half
                    // of what got through (measured over a young crawl's few
                    // round trips, which a burst allowance inflates).
                    (None, _) => {
                        state.probing = true;
                        // From now on what got through is measured from
                        // here: the bucket is empty, and what a burst
                        // allowance let through before (answered later,
                        // too) would hide a rate far above the limit from
                        // the steady cuts.
                        state.measured_from = Some(now);
                        state.successes.clear();
                        let half = let_through * 0.5;
                        let proven = slot.proven_before.unwrap_or(0.0);
                        state.start_unproven = (proven > half).then_some(half);
                        state.start_test_sent = false;
                        half.max(proven)
                    }
                    // The ladder's rate refuted: the call before the first
                    // throttled one got through on a burst allowance, not
                    // on the rate. Probe from half of what got through.
                    (Some(_), true) if slot.tests_start && state.start_unproven.is_some() => {
                        state.start_unproven.take().unwrap_or(MIN_RATE)
                    }
                    // The probe overshot: the throttled call was spaced by a
                    // rate at most a step above the allowed one.
                    (Some(rate), true) => {
                        state.probing = false;
                        state.settled_by_probe = true;
                        let throttled = slot.rate.unwrap_or(rate);
                        throttled / state.probe_step(throttled)
                    }
                    // Steady: CUT, or deeper for a rate far above the
                    // limit (one learned in a burst allowance), so that it
                    // comes down in a few cuts, not in many.
                    (Some(rate), false) => {
                        // This is the first of the calls sent since the
                        // last cut to be throttled: one in that many is
                        // over the limit, so a rate that still throttles
                        // soon after a cut (a burst allowance spent) is cut
                        // by that share, down to DEEPEST_CUT. Only when
                        // less got through over the last second (or since
                        // the first throttle) than CUT leaves: a throttle
                        // near the allowed rate (a call arriving late, the
                        // next on time) is no storm.
                        // The first call after a cut says less: it meets a
                        // bucket that had one interval to refill.
                        // The probe settled at the last step that got
                        // through, at or just above the limit: its first
                        // throttle is no news of a burst allowance.
                        let after_probe = std::mem::take(&mut state.settled_by_probe);
                        let over = match state.sent_since_cut {
                            _ if after_probe => 0.0,
                            0 | 1 => 0.0,
                            _ if let_through >= rate * CUT => 0.0,
                            sent => 1.0 / f64::from(sent),
                        };
                        rate * CUT.min((1.0 - over).max(DEEPEST_CUT))
                    }
                };
                state.sent_since_cut = 0;
                let rate = rate.max(MIN_RATE);
                tracing::debug!(rate, let_through, "throttled: pacing DescribeSessions");
                state.rate = Some(rate);
                state.last_cut = Some(now);
                // The throttle means the service's bucket is empty: let it
                // refill for one interval before the next call.
                state.not_before = now + Duration::from_secs_f64(1.0 / rate);
            }
            Outcome::Failed => {
                if slot.tests_start {
                    // Says nothing of the rate: the next call tests it.
                    state.start_test_sent = false;
                }
            }
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
                let room = if state.probing { 1.0 } else { 1.5 };
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

    /// A pacer whose first throttle has come: `a` succeeded after 100 ms
    /// (10 calls/s got through), then `b` started and was throttled at
    /// once, so the probe starts at 5 calls/s. Returns the instant `a`
    /// started.
    async fn probing_at_five_per_second() -> (Pacer, Instant) {
        let pacer = Pacer::new();
        let origin = Instant::now();
        let a = pacer.start().await;
        tokio::time::advance(Duration::from_millis(100)).await;
        pacer.finish(a, Outcome::Succeeded);
        let b = pacer.start().await;
        pacer.finish(b, Outcome::Throttled);
        let probe = pacer.rate().expect("a rate");
        assert!((probe - 5.0).abs() < 1e-9, "{probe}");
        (pacer, origin)
    }

    /// A pacer whose probe (see [`probing_at_five_per_second`]) ended on
    /// its first call, and the rate it settled at.
    async fn settled_after_the_probe() -> (Pacer, f64) {
        let (pacer, _) = probing_at_five_per_second().await;
        let x = pacer.start().await;
        pacer.finish(x, Outcome::Throttled);
        let settled = pacer.rate().expect("a rate");
        (pacer, settled)
    }

    /// Two calls: the first fails otherwise (a call late, say nothing of
    /// the rate), the second is throttled; returns the rate after.
    async fn second_of_two_throttled(pacer: &Pacer) -> f64 {
        let other = pacer.start().await;
        pacer.finish(other, Outcome::Failed);
        let second = pacer.start().await;
        pacer.finish(second, Outcome::Throttled);
        pacer.rate().expect("a rate")
    }

    #[tokio::test(start_paused = true)]
    async fn calls_start_slowly_and_spread_over_a_round_trip() {
        let pacer = Pacer::new();
        // Before any throttle: START_IN_FLIGHT in flight, then one more per
        // success.
        let mut first = Vec::new();
        for _ in 0..START_IN_FLIGHT {
            first.push(pacer.start().await);
        }
        // The first of them leave FAN_OUT_GUARD apart (a throttle takes a
        // round trip to come back); the rest at the spread, none while no
        // call has come back to measure a round trip by.
        for pair in first[..FAN_OUT_GUARDED].windows(2) {
            let gap = pair[1].sent.duration_since(pair[0].sent);
            assert!(gap >= FAN_OUT_GUARD, "{gap:?}");
        }
        assert_eq!(first[FAN_OUT_GUARDED].sent, first[FAN_OUT_GUARDED - 1].sent);
        let next = tokio::time::timeout(Duration::from_millis(60), pacer.start()).await;
        assert!(next.is_err(), "one more call waits for a place");
        pacer.finish(first.pop().expect("a call"), Outcome::Succeeded);
        let c = pacer.start().await;
        let d = pacer.start().await;
        assert_eq!(pacer.rate(), None);
        // The cap's calls leave half a round trip (60 ms) apart over the
        // cap, so a throttle stops a fan-out before all of it.
        let gap = d.sent.duration_since(c.sent);
        let cap = START_IN_FLIGHT as u32 + 1;
        assert!(gap >= Duration::from_millis(60) / (2 * cap), "{gap:?}");
        for call in first.into_iter().chain([c, d]) {
            pacer.finish(call, Outcome::Succeeded);
        }
        assert_eq!(pacer.rate(), None, "successes set no rate");
    }

    /// A pacer after Active's page, then History's first, each alone and
    /// 100 ms long.
    async fn a_pacer_after_two_pages() -> Pacer {
        let pacer = Pacer::new();
        for _ in 0..2 {
            let page = pacer.start().await;
            tokio::time::advance(Duration::from_millis(100)).await;
            pacer.finish(page, Outcome::Succeeded);
        }
        pacer
    }

    /// Those two pages, then a fan-out's first `calls` calls, as the pacer
    /// lets them leave.
    async fn a_fan_out_after_two_pages(calls: usize) -> (Pacer, Vec<Slot>) {
        let pacer = a_pacer_after_two_pages().await;
        let mut fan_out = Vec::new();
        for _ in 0..calls {
            fan_out.push(pacer.start().await);
        }
        (pacer, fan_out)
    }

    /// The same fan-out, its last call throttled: the pacer, and the rate
    /// that first throttle set.
    async fn a_first_throttle_at_the_fan_outs(calls: usize) -> (Pacer, f64) {
        let (pacer, mut fan_out) = a_fan_out_after_two_pages(calls).await;
        pacer.finish(fan_out.pop().expect("a call"), Outcome::Throttled);
        let rate = pacer.rate().expect("a rate");
        (pacer, rate)
    }

    #[tokio::test(start_paused = true)]
    async fn a_fan_outs_first_calls_leave_on_a_ladder_of_halving_gaps() {
        let (_pacer, fan_out) = a_fan_out_after_two_pages(FAN_OUT_GUARDED + 1).await;
        let gaps: Vec<u128> = fan_out
            .windows(2)
            .map(|pair| pair[1].sent.duration_since(pair[0].sent).as_millis())
            .collect();
        // A quarter of the round trip, an eighth, then the guard (a
        // sixteenth would be under it); then the spread, 100 ms / 32 (the
        // paused clock's timers round up to whole milliseconds).
        assert_eq!(gaps, [25, 13, 10, 10, 10, 3]);
        let proven: Vec<Option<u32>> = fan_out
            .iter()
            .map(|slot| slot.proven_before.map(|rate| rate.round() as u32))
            .collect();
        // The fan-out's first call left a round trip after History's page;
        // each call on the ladder carries the rate of the gap before it.
        assert_eq!(
            proven,
            [None, Some(10), Some(40), Some(77), None, None, None]
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_guard_after_a_late_timer_proves_no_rate() {
        let pacer = a_pacer_after_two_pages().await;
        // Each call after the first leaves 1.5 ms after its rung was due,
        // as a timer that wakes late lets it.
        let late = Duration::from_micros(1500);
        let mut fan_out = vec![pacer.start().await];
        for rung_ms in [25.0, 12.5, 10.0, 10.0, 10.0] {
            tokio::time::advance(Duration::from_secs_f64(rung_ms / 1000.0) + late).await;
            fan_out.push(pacer.start().await);
        }
        let proven: Vec<Option<u32>> = fan_out
            .iter()
            .map(|slot| slot.proven_before.map(|rate| rate.round() as u32))
            .collect();
        // The narrowing rungs prove the gap actually left before them (26.5
        // and 14 ms); the guard's even rungs prove nothing, however late
        // the call before them left.
        assert_eq!(proven, [None, Some(10), Some(38), Some(71), None, None]);
        // So a burst allowance that admits the guard's calls is not read
        // as a rate of 87 calls/s: half of what got through (two pages in
        // 275 ms).
        pacer.finish(fan_out.pop().expect("a call"), Outcome::Throttled);
        let rate = pacer.rate().expect("a rate");
        assert!((rate - 1.0 / 0.275).abs() < 1e-6, "{rate}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_first_throttle_on_the_ladder_starts_the_rate_where_the_call_before_got_through() {
        // Throttled at an eighth of a round trip: the quarter before got
        // through, so the service allows 40 calls/s, not the 4.2 that half
        // of what got through (two pages in 237.5 ms) would say.
        let (_, rate) = a_first_throttle_at_the_fan_outs(3).await;
        assert!((rate - 40.0).abs() < 1e-9, "{rate}");

        // Throttled at the quarter: the call before left a round trip
        // after History's page.
        let (_, rate) = a_first_throttle_at_the_fan_outs(2).await;
        assert!((rate - 10.0).abs() < 1e-9, "{rate}");

        // Past the ladder, the spread's gap proves nothing (a burst
        // allowance admits it): half of what got through, two pages in
        // 271 ms.
        let (_, rate) = a_first_throttle_at_the_fan_outs(FAN_OUT_GUARDED + 1).await;
        assert!((rate - 1.0 / 0.271).abs() < 1e-9, "{rate}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_ladder_rate_whose_first_call_is_throttled_falls_back_to_half_of_what_got_through() {
        // Throttled at an eighth of a round trip: the ladder says 40/s.
        let (pacer, ladder) = a_first_throttle_at_the_fan_outs(3).await;
        assert!((ladder - 40.0).abs() < 1e-9, "{ladder}");
        // The first call it spaces is throttled too: a burst allowance,
        // not the rate, had admitted the quarter's call. Half of what got
        // through (two pages in 238 ms), and the probe goes on from there.
        let test = pacer.start().await;
        assert!(test.tests_start);
        pacer.finish(test, Outcome::Throttled);
        let fallback = pacer.rate().expect("a rate");
        assert!((fallback - 0.5 * 2.0 / 0.238).abs() < 1e-9, "{fallback}");
        let next = pacer.start().await;
        assert!(!next.tests_start, "the ladder's rate is tested once");
        tokio::time::advance(Duration::from_millis(100)).await;
        pacer.finish(next, Outcome::Succeeded);
        assert!(pacer.rate().expect("a rate") > fallback, "still probing");
    }

    #[tokio::test(start_paused = true)]
    async fn a_ladder_rate_whose_first_call_gets_through_stands() {
        let (pacer, _) = a_first_throttle_at_the_fan_outs(3).await;
        let test = pacer.start().await;
        assert!(test.tests_start);
        // A later call throttled while the test is in flight ends the
        // probe as any would, a step below the rate that spaced it.
        let later = pacer.start().await;
        assert!(!later.tests_start);
        pacer.finish(later, Outcome::Throttled);
        let settled = pacer.rate().expect("a rate");
        assert!(settled > 30.0 && settled < 40.0, "{settled}");
        tokio::time::advance(Duration::from_millis(100)).await;
        pacer.finish(test, Outcome::Succeeded);
        // Proven: a throttle now is an ordinary cut, never the fallback.
        let after = pacer.start().await;
        pacer.finish(after, Outcome::Throttled);
        let cut = pacer.rate().expect("a rate");
        assert!(cut > 0.6 * settled, "{cut} after {settled}");
    }

    #[tokio::test(start_paused = true)]
    async fn the_rate_is_learned_from_throttling_probed_upwards_and_settled() {
        let (pacer, _) = probing_at_five_per_second().await;
        let first = pacer.rate().expect("a rate");

        // The next call waits out one interval of the new rate (the
        // service's bucket refilling); a call sent before the cut was
        // spaced by the old pace, so its throttle is no news.
        let x = pacer.start().await;
        assert!(x.waited);
        let stale = Slot {
            sent: x.sent - Duration::from_secs(1),
            waited: true,
            rate: None,
            proven_before: None,
            tests_start: false,
        };
        pacer.finish(stale, Outcome::Throttled);
        assert_eq!(pacer.rate(), Some(first));

        // A call that waited for its slot and succeeded is one step of the
        // probe: at 5 calls/s a round trip holds less than PROBE_CALLS, so
        // the rate doubles in PROBE_CALLS steps.
        tokio::time::advance(Duration::from_millis(100)).await;
        pacer.finish(x, Outcome::Succeeded);
        let stepped = pacer.rate().expect("a rate");
        assert!(
            (stepped - first * (1.0 / PROBE_CALLS).exp2()).abs() < 1e-9,
            "{stepped}"
        );

        // A call that did not wait was not held back by the rate: no step.
        tokio::time::advance(Duration::from_secs(10)).await;
        let idle = pacer.start().await;
        assert!(!idle.waited);
        pacer.finish(idle, Outcome::Succeeded);
        assert_eq!(pacer.rate(), Some(stepped));

        // Calls are spaced by the rate.
        let e = pacer.start().await;
        let f = pacer.start().await;
        assert!(f.sent.duration_since(e.sent) >= Duration::from_secs_f64(0.999 / stepped));
        assert_eq!(f.rate, Some(stepped));
        // A throttle ends the probe one step below the rate that spaced the
        // throttled call: the last step that got through.
        pacer.finish(f, Outcome::Throttled);
        let settled = pacer.rate().expect("a rate");
        assert!((settled - first).abs() < 1e-9, "{settled}");
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
        // A second of calls at the rate, all through, then the first
        // throttle since the probe: CUT.
        let since = Instant::now();
        while since.elapsed() < Duration::from_secs(1) {
            let call = pacer.start().await;
            pacer.finish(call, Outcome::Succeeded);
        }
        let raised = pacer.rate().expect("a rate");
        let h = pacer.start().await;
        pacer.finish(h, Outcome::Throttled);
        let cut = pacer.rate().expect("a rate");
        assert!((cut - raised * CUT).abs() < 1e-9, "{cut} after {raised}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_throttle_while_the_last_second_got_through_at_the_rate_is_an_ordinary_cut() {
        // Steady at 100 calls/s, and the last second's 100 calls got
        // through.
        let pacer = Pacer::new();
        tokio::time::advance(Duration::from_secs(2)).await;
        let now = Instant::now();
        {
            let mut state = pacer.lock();
            state.rate = Some(100.0);
            state.measured_from = Some(now - Duration::from_secs(2));
            state.successes = (0..100)
                .rev()
                .map(|i| now - Duration::from_millis(10 * i))
                .collect();
        }
        // The second of the next two calls throttled says half of them
        // were over the limit, but the last second says otherwise: a call
        // late and the next on time, no storm, so CUT.
        let cut = second_of_two_throttled(&pacer).await;
        assert!((cut - 100.0 * CUT).abs() < 1e-9, "{cut}");
        // Two seconds on, nothing got through meanwhile: the same
        // throttle now cuts by its share, down to DEEPEST_CUT.
        tokio::time::advance(Duration::from_secs(2)).await;
        let deeper = second_of_two_throttled(&pacer).await;
        assert!(
            (deeper - cut * DEEPEST_CUT).abs() < 1e-9,
            "{deeper} after {cut}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_that_still_throttles_soon_after_a_cut_is_cut_by_the_share_throttled() {
        let (pacer, settled) = settled_after_the_probe().await;
        // The probe settled at or just above the limit: its first throttle,
        // even the second of two calls, is an ordinary cut.
        let cut = second_of_two_throttled(&pacer).await;
        assert!((cut - settled * CUT).abs() < 1e-9, "{cut} after {settled}");
        // The first call after a cut meets a bucket that had one interval
        // to refill: its throttle is an ordinary cut.
        let first = pacer.start().await;
        pacer.finish(first, Outcome::Throttled);
        let second_cut = pacer.rate().expect("a rate");
        assert!(
            (second_cut - cut * CUT).abs() < 1e-9,
            "{second_cut} after {cut}"
        );
        // The third of three calls throttled, with nothing getting through
        // since the first throttle (the others fail otherwise): a third
        // over the limit, cut by that share rather than by CUT.
        for _ in 0..2 {
            let call = pacer.start().await;
            pacer.finish(call, Outcome::Failed);
        }
        let third = pacer.start().await;
        pacer.finish(third, Outcome::Throttled);
        let by_share = pacer.rate().expect("a rate");
        assert!(
            (by_share - second_cut * 2.0 / 3.0).abs() < 1e-9,
            "{by_share} after {second_cut}"
        );
        // The second of two: half over the limit, but no cut goes deeper
        // than DEEPEST_CUT.
        let deepest = second_of_two_throttled(&pacer).await;
        assert!(
            (deepest - by_share * DEEPEST_CUT).abs() < 1e-9,
            "{deepest} after {by_share}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn what_a_burst_let_through_before_the_first_throttle_does_not_stop_a_deeper_cut() {
        // A fan-out of 16 meets a burst allowance: 100 ms after the last
        // of them left, ten have succeeded (the probe starts at half of
        // what got through) and one is throttled; five more, let through
        // by the burst, succeed after it.
        let pacer = Pacer::new();
        let mut through = Vec::new();
        for _ in 0..10 {
            through.push(pacer.start().await);
        }
        let mut answered_late = Vec::new();
        for _ in 0..5 {
            answered_late.push(pacer.start().await);
        }
        let b = pacer.start().await;
        tokio::time::advance(Duration::from_millis(100)).await;
        for call in through {
            pacer.finish(call, Outcome::Succeeded);
        }
        pacer.finish(b, Outcome::Throttled);
        for call in answered_late {
            pacer.finish(call, Outcome::Succeeded);
        }
        let burst_answered = Instant::now();
        // The probe ends on its first call, and its first throttle is an
        // ordinary cut.
        for _ in 0..2 {
            let call = pacer.start().await;
            pacer.finish(call, Outcome::Throttled);
        }
        let cut = pacer.rate().expect("a rate");
        // The second of two calls throttled, within a second of the burst:
        // nothing got through since the first throttle, so the cut goes
        // deeper. Counted from the first call, the burst's 15 would be
        // more than CUT of the rate, and the cut would stay at CUT.
        let deeper = second_of_two_throttled(&pacer).await;
        assert!(burst_answered.elapsed() < Duration::from_millis(500));
        assert!(
            (deeper - cut * DEEPEST_CUT).abs() < 1e-9,
            "{deeper} after {cut}"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_the_crawl_does_not_use_does_not_grow_and_asks_for_no_windows() {
        let pacer = Pacer::new();
        assert_eq!(pacer.useful_concurrency(16), 16, "all, before any throttle");
        let (pacer, _) = probing_at_five_per_second().await;
        let probe = pacer.rate().expect("a rate");
        // At 100 ms a call, one window keeps 5 calls/s busy.
        assert_eq!(pacer.useful_concurrency(16), 1);
        // A second later a call finds its slot free (one window paging
        // alone uses less than the rate): however long the probe has run,
        // the rate stays where it was.
        tokio::time::advance(Duration::from_secs(1)).await;
        let c = pacer.start().await;
        assert!(!c.waited);
        tokio::time::advance(Duration::from_millis(100)).await;
        pacer.finish(c, Outcome::Succeeded);
        assert_eq!(pacer.rate(), Some(probe));
        assert_eq!(pacer.useful_concurrency(16), 1);
    }

    #[tokio::test(start_paused = true)]
    async fn a_rate_that_rises_reaches_the_calls_already_waiting() {
        let (pacer, origin) = probing_at_five_per_second().await;
        // The first call after the throttle waits out one interval (200 ms
        // at 5 calls/s, until 300 ms); the next would be due 200 ms later.
        let x = pacer.start().await;
        assert_eq!(x.sent.duration_since(origin), Duration::from_millis(300));
        // While it waits, x succeeds and the probe steps up: it starts one
        // interval of the new rate after x, not of the old.
        let (waiting, ()) = tokio::join!(pacer.start(), async {
            tokio::time::sleep(Duration::from_millis(50)).await;
            pacer.finish(x, Outcome::Succeeded);
        });
        let stepped = pacer.rate().expect("a rate");
        let expected = Duration::from_millis(300) + Duration::from_secs_f64(1.0 / stepped);
        let sent = waiting.sent.duration_since(origin);
        assert!(
            sent >= expected && sent < expected + Duration::from_millis(2),
            "{sent:?}, expected {expected:?}"
        );
        assert!(sent < Duration::from_millis(500));
    }
}
