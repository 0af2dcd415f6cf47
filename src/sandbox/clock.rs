//! A run's wall clock, which stands still while the run waits for a person. A call the
//! policy asks the user to confirm holds the clock until the answer comes (or the
//! approval timeout, `codemode.policy.approvalTimeoutMs`, ends the wait): the user gets the
//! approval timeout to answer, and the program keeps its `timeoutMs` for its own work.
//!
//! A clock standing still must not buy CPU: a program could compute on timers, or in a
//! loop beside the awaited call, for as long as nobody answers. So a hold pauses the clock
//! only by the time the run's thread did not compute meanwhile (its CPU time, where the
//! engine names the thread with [`RunClock::measure_cpu_of_this_thread`]): a run computing
//! while held runs out as if it had not been held. And the holds of one run pause it by
//! at most [`RunClock::with_max_hold`] in all (the approval timeout): a program asking
//! again and again keeps its slot no longer than that past its own limit. In a worker
//! process, the process's own CPU limit bounds it too.
//!
//! Every deadline of a run reads one clock: the engine's (its interrupt, its wait for the
//! program), the host's backstop, the worker pool's kill timer, and across the process
//! boundary the worker's own clock, which the pool holds and releases by message.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// One run's clock; clones share it.
#[derive(Debug, Clone, Default)]
pub struct RunClock(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    state: Mutex<State>,
    /// Bumped on every start, hold and release: waiters look again.
    changed: tokio::sync::watch::Sender<u64>,
}

#[derive(Debug)]
struct State {
    /// When the limit runs out, not counting the pause holds earned.
    deadline: Option<Instant>,
    /// The pause earned by the holds that ended.
    paused: Duration,
    /// The most pause all holds may earn.
    max_hold: Duration,
    /// Holds open now, since when the first of them, and the thread's CPU time then.
    holds: usize,
    held_since: Option<Instant>,
    cpu_at_hold: Option<Duration>,
    /// The thread whose CPU time a hold does not pause.
    cpu: Option<libc::clockid_t>,
}

impl Default for State {
    fn default() -> Self {
        Self {
            deadline: None,
            paused: Duration::ZERO,
            max_hold: Duration::MAX,
            holds: 0,
            held_since: None,
            cpu_at_hold: None,
            cpu: None,
        }
    }
}

impl RunClock {
    /// A clock whose holds pause it by at most `max_hold` in all.
    pub fn with_max_hold(max_hold: Duration) -> Self {
        let clock = Self::default();
        clock.lock().max_hold = max_hold;
        clock
    }

    /// Starts the clock with `limit` from now; a clock already started keeps its deadline
    /// (whoever hands the program over starts it; the first wins).
    pub fn start(&self, limit: Duration) {
        let mut state = self.lock();
        if state.deadline.is_none() {
            state.deadline = Some(Instant::now() + limit);
            drop(state);
            self.bump();
        }
    }

    /// Whether the clock has been started.
    pub fn is_started(&self) -> bool {
        self.lock().deadline.is_some()
    }

    /// Names the current thread as the one whose CPU time a hold does not pause.
    pub fn measure_cpu_of_this_thread(&self) {
        let mut id: libc::clockid_t = 0;
        // SAFETY: pthread_self is this thread; `id` is a valid place for the answer.
        let found = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut id) } == 0;
        if found && cpu_time(id).is_some() {
            self.lock().cpu = Some(id);
        }
    }

    /// Stops the clock until the returned guard is dropped; holds nest.
    pub fn hold(&self) -> Held {
        let mut state = self.lock();
        state.holds += 1;
        if state.holds == 1 {
            state.held_since = Some(Instant::now());
            state.cpu_at_hold = state.cpu.and_then(cpu_time);
        }
        drop(state);
        self.bump();
        Held(self.clone())
    }

    /// Whether a hold is open.
    pub fn is_held(&self) -> bool {
        self.lock().holds > 0
    }

    /// Whether the run is out of time: its limit, plus the pause its holds earned, has
    /// passed.
    pub fn expired(&self) -> bool {
        self.lock().expired_at(Instant::now())
    }

    /// Resolves once [`Self::expired`] says so. While a hold is open it wakes only when
    /// the hold ends or the most pause is used up: a run computing while held is caught
    /// where its JS runs (the engine's interrupt, deno's watchdog), not by waking its
    /// thread to look.
    pub async fn expiry(&self) {
        let mut changes = self.0.changed.subscribe();
        loop {
            let next = {
                let state = self.lock();
                let now = Instant::now();
                if state.expired_at(now) {
                    return;
                }
                state.deadline.and_then(|deadline| {
                    let pause = if state.holds > 0 {
                        state.max_hold
                    } else {
                        state.paused
                    };
                    deadline.checked_add(pause)
                })
            };
            match next {
                Some(at) => {
                    tokio::select! {
                        () = tokio::time::sleep_until(at.into()) => {}
                        _ = changes.changed() => {}
                    }
                }
                None => {
                    if changes.changed().await.is_err() {
                        // Nobody can start or release the clock any more.
                        std::future::pending::<()>().await;
                    }
                }
            }
        }
    }

    /// A receiver that hears of every start, hold and release.
    pub fn watch(&self) -> tokio::sync::watch::Receiver<u64> {
        self.0.changed.subscribe()
    }

    fn bump(&self) {
        self.0.changed.send_modify(|n| *n = n.wrapping_add(1));
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.0.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

impl State {
    /// The pause earned by now: the holds that ended, and the open one's wall time less
    /// the CPU time its thread used meanwhile; at most `max_hold`.
    fn pause_at(&self, now: Instant) -> Duration {
        let open = match self.held_since {
            Some(since) if self.holds > 0 => {
                let spent = match (self.cpu.and_then(cpu_time), self.cpu_at_hold) {
                    (Some(now), Some(then)) => now.saturating_sub(then),
                    _ => Duration::ZERO,
                };
                now.saturating_duration_since(since).saturating_sub(spent)
            }
            _ => Duration::ZERO,
        };
        self.paused.saturating_add(open).min(self.max_hold)
    }

    fn expired_at(&self, now: Instant) -> bool {
        self.deadline.is_some_and(|deadline| {
            deadline
                .checked_add(self.pause_at(now))
                .is_some_and(|end| now >= end)
        })
    }
}

/// An open hold on a run's clock; dropping it lets the clock run on from where it stood.
#[derive(Debug)]
pub struct Held(RunClock);

impl Drop for Held {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        if state.holds == 1 {
            state.paused = state.pause_at(Instant::now());
            state.held_since = None;
            state.cpu_at_hold = None;
        }
        state.holds = state.holds.saturating_sub(1);
        drop(state);
        self.0.bump();
    }
}

fn cpu_time(id: libc::clockid_t) -> Option<Duration> {
    let mut now = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `now` is a valid place for the answer.
    (unsafe { libc::clock_gettime(id, &mut now) } == 0)
        .then(|| Duration::new(now.tv_sec as u64, now.tv_nsec as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spin_until(done: impl Fn() -> bool) {
        let mut spins = 0u64;
        while !done() {
            spins = std::hint::black_box(spins.wrapping_add(1));
        }
    }

    #[test]
    fn a_held_clock_stands_still_and_holds_nest() {
        let clock = RunClock::default();
        assert!(!clock.expired(), "not started");
        clock.start(Duration::from_millis(20));
        let held = clock.hold();
        std::thread::sleep(Duration::from_millis(40));
        assert!(
            !clock.expired(),
            "held while idle: the wall clock stands still"
        );
        let nested = clock.hold();
        drop(held);
        assert!(clock.is_held() && !clock.expired(), "holds nest");
        drop(nested);
        let expired = clock.clone();
        spin_until(move || expired.expired());
    }

    #[test]
    fn a_hold_cannot_revive_a_run_out_of_time() {
        let clock = RunClock::default();
        clock.start(Duration::ZERO);
        let _held = clock.hold();
        assert!(clock.expired());
    }

    #[test]
    fn a_hold_moves_the_deadline_by_the_time_held() {
        let clock = RunClock::default();
        clock.start(Duration::from_secs(3600));
        let held = clock.hold();
        std::thread::sleep(Duration::from_millis(20));
        drop(held);
        assert!(clock.lock().paused >= Duration::from_millis(20));
    }

    #[test]
    fn a_run_computing_while_held_runs_out_on_its_cpu_time() {
        let clock = RunClock::default();
        clock.start(Duration::from_millis(30));
        clock.measure_cpu_of_this_thread();
        let _held = clock.hold();
        // Counts CPU time, not wall time: however loaded the machine, the loop ends once
        // this thread has computed for the limit.
        let expired = clock.clone();
        spin_until(move || expired.expired());
        assert!(clock.is_held());
    }

    #[test]
    fn holds_pause_at_most_the_cap_in_all() {
        let clock = RunClock::with_max_hold(Duration::from_millis(10));
        clock.start(Duration::from_millis(10));
        let _held = clock.hold();
        std::thread::sleep(Duration::from_millis(40));
        assert!(clock.expired(), "held past the cap: the clock ran on");
    }

    #[tokio::test]
    async fn expiry_waits_out_a_hold() {
        let clock = RunClock::default();
        clock.start(Duration::from_millis(20));
        let held = clock.hold();
        let expiry = clock.expiry();
        tokio::pin!(expiry);
        tokio::time::sleep(Duration::from_millis(40)).await;
        assert!(
            futures::poll!(expiry.as_mut()).is_pending(),
            "held: no expiry"
        );
        drop(held);
        expiry.await;
    }
}
