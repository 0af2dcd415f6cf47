//! A run's wall clock, which stands still while the run waits for a person. A call the
//! policy asks the user to confirm holds the clock until the answer comes (or the
//! approval timeout, `codemode.policy.approvalTimeoutMs`, ends the wait): the user gets the
//! approval timeout to answer, and the program keeps its `timeoutMs` for its own work.
//!
//! A clock standing still must not buy CPU: a program could compute on timers, or in a
//! loop beside the awaited call, for as long as nobody answers. So while it is held, the
//! run is bounded by the CPU time of the thread its JS runs on (which the engine names
//! with [`RunClock::measure_cpu_of_this_thread`]): past the time limit in CPU seconds, the
//! run has expired as if its wall clock had run on. In a worker process, the process's
//! own CPU limit bounds it too.
//!
//! Every deadline of a run reads one clock: the engine's (its interrupt, its wait for the
//! program), the host's backstop, the worker pool's kill timer, and across the process
//! boundary the worker's own clock, which the pool holds and releases by message.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

/// How often a held clock looks at the CPU time of its run.
const HELD_POLL: Duration = Duration::from_millis(50);

/// One run's clock; clones share it.
#[derive(Debug, Clone, Default)]
pub struct RunClock(Arc<Inner>);

#[derive(Debug, Default)]
struct Inner {
    state: Mutex<State>,
    /// Bumped on every start, hold and release: waiters look again.
    changed: tokio::sync::watch::Sender<u64>,
}

#[derive(Debug, Default)]
struct State {
    /// The time limit, once started.
    limit: Option<Duration>,
    /// When the limit runs out, counting the holds that ended so far.
    deadline: Option<Instant>,
    /// Holds open now, and since when the first of them.
    holds: usize,
    held_since: Option<Instant>,
    /// The thread whose CPU time bounds the run while it is held, and its CPU time when
    /// the run started.
    cpu: Option<(libc::clockid_t, Duration)>,
}

impl RunClock {
    /// Starts the clock with `limit` from now; a clock already started keeps its deadline
    /// (the engine and the host each start it; the first wins).
    pub fn start(&self, limit: Duration) {
        let mut state = self.lock();
        if state.deadline.is_none() {
            state.limit = Some(limit);
            state.deadline = Some(Instant::now() + limit);
            drop(state);
            self.bump();
        }
    }

    /// Names the current thread as the one whose CPU time bounds the run while it is held.
    pub fn measure_cpu_of_this_thread(&self) {
        let mut id: libc::clockid_t = 0;
        // SAFETY: pthread_self is this thread; `id` is a valid place for the answer.
        let found = unsafe { libc::pthread_getcpuclockid(libc::pthread_self(), &mut id) } == 0;
        if let (true, Some(now)) = (found, cpu_time(id)) {
            self.lock().cpu = Some((id, now));
        }
    }

    /// Stops the clock until the returned guard is dropped; holds nest.
    pub fn hold(&self) -> Held {
        let mut state = self.lock();
        state.holds += 1;
        if state.holds == 1 {
            state.held_since = Some(Instant::now());
        }
        drop(state);
        self.bump();
        Held(self.clone())
    }

    /// Whether a hold is open.
    pub fn is_held(&self) -> bool {
        self.lock().holds > 0
    }

    /// Whether the run is out of time: its wall clock ran out (held time not counted), or,
    /// while held, its thread used the time limit in CPU time.
    pub fn expired(&self) -> bool {
        let state = self.lock();
        match (state.deadline, state.holds) {
            (None, _) => false,
            (Some(deadline), 0) => Instant::now() >= deadline,
            (Some(_), _) => state.cpu_spent_limit(),
        }
    }

    /// Resolves once [`Self::expired`] says so.
    pub async fn expiry(&self) {
        let mut changes = self.0.changed.subscribe();
        loop {
            let next = {
                let state = self.lock();
                match (state.deadline, state.holds) {
                    (None, _) => None,
                    (Some(deadline), 0) if Instant::now() >= deadline => return,
                    (Some(deadline), 0) => Some(deadline),
                    (Some(_), _) if state.cpu_spent_limit() => return,
                    // Held: the CPU time is looked at now and then, and only then.
                    (Some(_), _) => Some(Instant::now() + HELD_POLL),
                }
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
                        // Nobody can start the clock any more.
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
    fn cpu_spent_limit(&self) -> bool {
        let (Some((id, at_start)), Some(limit)) = (self.cpu, self.limit) else {
            return false;
        };
        cpu_time(id).is_some_and(|now| now.saturating_sub(at_start) >= limit)
    }
}

/// An open hold on a run's clock; dropping it lets the clock run on from where it stood.
#[derive(Debug)]
pub struct Held(RunClock);

impl Drop for Held {
    fn drop(&mut self) {
        let mut state = self.0.lock();
        state.holds = state.holds.saturating_sub(1);
        if state.holds == 0
            && let Some(since) = state.held_since.take()
            && let Some(deadline) = &mut state.deadline
        {
            *deadline += since.elapsed();
        }
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

    #[test]
    fn a_held_clock_does_not_run_out() {
        let clock = RunClock::default();
        assert!(!clock.expired(), "not started");
        clock.start(Duration::ZERO);
        assert!(clock.expired());
        let held = clock.hold();
        assert!(!clock.expired(), "held: the wall clock stands still");
        let nested = clock.hold();
        drop(held);
        assert!(clock.is_held() && !clock.expired(), "holds nest");
        drop(nested);
        assert!(clock.expired(), "released: the limit was already used");
    }

    #[test]
    fn a_hold_moves_the_deadline_by_the_time_held() {
        let clock = RunClock::default();
        clock.start(Duration::from_secs(3600));
        let deadline = clock.lock().deadline.unwrap();
        let held = clock.hold();
        std::thread::sleep(Duration::from_millis(20));
        drop(held);
        let moved = clock.lock().deadline.unwrap() - deadline;
        assert!(moved >= Duration::from_millis(20), "{moved:?}");
    }

    #[test]
    fn a_held_clock_runs_out_on_cpu_time() {
        let clock = RunClock::default();
        clock.start(Duration::from_millis(30));
        clock.measure_cpu_of_this_thread();
        let _held = clock.hold();
        // Counts CPU time, not wall time: however loaded the machine, the loop ends once
        // this thread has computed for the limit.
        let mut spins = 0u64;
        while !clock.expired() {
            spins = std::hint::black_box(spins.wrapping_add(1));
        }
        assert!(clock.is_held());
    }

    #[tokio::test]
    async fn expiry_waits_out_a_hold() {
        let clock = RunClock::default();
        clock.start(Duration::ZERO);
        let held = clock.hold();
        let expiry = clock.expiry();
        tokio::pin!(expiry);
        assert!(
            futures::poll!(expiry.as_mut()).is_pending(),
            "held: no expiry"
        );
        drop(held);
        expiry.await;
    }
}
