//! Running an admitted program: a slot (an isolate thread or a worker process, or the
//! caller's, for a skill), the queue in front of the slots, and the host's backstop for
//! an isolate that does not come back by its own deadline.

use std::{
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    thread,
    time::Duration,
};

use crossbeam_channel::{Sender, TrySendError};
use tokio::sync::oneshot;

use crate::{
    isolation::WorkerPool,
    sandbox::{
        Binding, CancelHandle, CancelReason, ErrorKind, Limits, ProgramError, RunClock, RunOutcome,
        RunRequest, ToolHost, cancel_message,
    },
    transpile::line_count,
};

use super::{Executor, threads::isolate_thread};

/// How long past the deadline the host waits for an isolate thread before it answers
/// `timeout` itself: some native built-ins never poll the engine's interrupt.
const HOST_GRACE: Duration = Duration::from_secs(1);

pub(super) struct Job {
    pub(super) request: RunRequest,
    pub(super) cancel: CancelHandle,
    pub(super) host: Arc<dyn ToolHost>,
    pub(super) started: oneshot::Sender<()>,
    pub(super) reply: oneshot::Sender<RunOutcome>,
}

/// What one run may use: its limits (the principal's), its clock, whether it has `fetch`.
pub(super) struct Allowance {
    pub(super) limits: Limits,
    /// Replaces the limits' wall clock (a task's).
    pub(super) wall_clock: Option<Duration>,
    /// Lowers it (the request's).
    pub(super) timeout: Option<Duration>,
    pub(super) fetch: bool,
}

impl Executor {
    /// Runs the admitted program `js` in an isolate (a thread's or a worker's) and waits
    /// for its outcome, within the run's clock and the host's backstop.
    pub(super) async fn run_in_isolate(
        &self,
        js: String,
        code: &str,
        Allowance {
            mut limits,
            wall_clock,
            timeout,
            fetch,
        }: Allowance,
        bindings: Vec<Binding>,
        (host, clock): (Arc<dyn ToolHost>, RunClock),
        nested: Option<u32>,
    ) -> RunOutcome {
        let within_caller = nested.is_some();
        // Held for the run: the slots of skills at this depth.
        let _nested_slot = match nested {
            Some(depth) => {
                let slots = self
                    .nested_slots
                    .lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .entry(depth)
                    .or_insert_with(|| {
                        Arc::new(tokio::sync::Semaphore::new(
                            self.settings.concurrency.max(1),
                        ))
                    })
                    .clone();
                slots.acquire_owned().await.ok()
            }
            None => None,
        };
        if let Some(wall_clock) = wall_clock {
            limits.timeout = wall_clock;
        }
        if let Some(timeout) = timeout {
            limits.timeout = limits.timeout.min(timeout);
        }
        if self.closed.is_cancelled() {
            return RunOutcome::failed(ProgramError::new(
                ErrorKind::Busy,
                "the server is shutting down and takes no new executions; nothing was run. Run the program again once the server is back (or on another replica)",
            ));
        }
        if let Runner::Threads(_) = &self.runner {
            let abandoned = self.abandoned.load(Ordering::SeqCst);
            if abandoned >= self.settings.concurrency.max(1) && !within_caller {
                return RunOutcome::failed(ProgramError::new(
                    ErrorKind::Busy,
                    format!(
                        "every isolate thread is held by a program abandoned past its time limit inside a built-in that cannot be interrupted ({abandoned} abandoned, still running); nothing was run. Retry later (the threads come back when those built-ins end); with process isolation (the default, --isolation process) such programs are killed instead"
                    ),
                ));
            }
        }
        let cancel = CancelHandle::with_clock(clock);
        let (reply, answer) = oneshot::channel();
        let (started, on_start) = oneshot::channel();
        let job = Job {
            request: RunRequest {
                js,
                program_lines: line_count(code),
                bindings,
                fetch,
                limits,
            },
            cancel: cancel.clone(),
            host,
            started,
            reply,
        };
        let submitted = match &self.runner {
            Runner::Threads(_) if within_caller => {
                let (engine, spin) = (self.settings.engine, self.settings.spin);
                let (one, queue) = crossbeam_channel::bounded::<Job>(1);
                let _ = one.send(job);
                drop(one);
                thread::Builder::new()
                    .name("codemode-isolate-skill".into())
                    .stack_size(
                        self.settings
                            .limits
                            .stack_bytes
                            .saturating_mul(4)
                            .max(8 << 20),
                    )
                    .spawn(move || isolate_thread(engine, spin, queue, None))
                    .map(drop)
                    .map_err(|_| Refused::Closed)
            }
            Runner::Workers(workers) if within_caller => {
                workers.submit_within_caller(job);
                Ok(())
            }
            Runner::Threads(jobs) => jobs.try_send(job).map_err(|err| match err {
                TrySendError::Full(_) => Refused::Full,
                TrySendError::Disconnected(_) => Refused::Closed,
            }),
            Runner::Workers(workers) => workers.submit(job),
        };
        match submitted {
            Ok(()) => {}
            Err(Refused::Full) => {
                return RunOutcome::failed(ProgramError::new(
                    ErrorKind::Busy,
                    format!(
                        "all {} execution slots and all {} queue places are taken; nothing was run. Retry in a moment, or combine work into fewer executions",
                        self.settings.concurrency, self.settings.queue
                    ),
                ));
            }
            Err(Refused::Closed) => {
                return RunOutcome::failed(ProgramError::new(
                    ErrorKind::Runtime,
                    "the executor has shut down; nothing was run",
                ));
            }
        }
        // Client cancellation drops this future; the guard then stops the isolate.
        let stop_on_drop = CancelOnDrop(cancel);
        let shut_down = || {
            RunOutcome::failed(ProgramError::new(
                ErrorKind::Cancelled,
                cancel_message(CancelReason::Shutdown),
            ))
        };
        // Time in the queue does not count against the program: the host's backstop starts
        // when an isolate thread takes the job.
        tokio::select! {
            started = on_start => if started.is_err() {
                return RunOutcome::failed(ProgramError::new(
                    ErrorKind::Runtime,
                    "the executor has shut down; nothing was run",
                ));
            },
            () = self.stopped.cancelled() => return shut_down(),
        }
        let mut receiver = answer;
        // The run's clock (standing still while the user is asked about a call), then the
        // grace: the backstop for isolates stuck where their own deadline cannot reach.
        // The clock starts where the program is handed over (the engine, or the worker
        // pool once it has a worker): making an isolate or a worker is not the program's
        // time. Should nothing ever start it, the backstop counts from here.
        let clock = stop_on_drop.0.clock().clone();
        let backstop = async {
            let unstarted = async {
                tokio::time::sleep(limits.timeout + HOST_GRACE).await;
                if clock.is_started() {
                    std::future::pending::<()>().await;
                }
            };
            tokio::select! {
                () = clock.expiry() => tokio::time::sleep(HOST_GRACE).await,
                () = unstarted => {}
            }
        };
        let answer = tokio::select! {
            answer = &mut receiver => Ok(answer),
            () = backstop => Err(()),
            () = self.stopped.cancelled() => {
                stop_on_drop.0.cancel_for(CancelReason::Shutdown);
                tokio::time::timeout(HOST_GRACE, &mut receiver).await.map_err(drop)
            }
        };
        match answer {
            Ok(Ok(outcome)) => outcome,
            Ok(Err(_)) => RunOutcome::failed(ProgramError::new(
                ErrorKind::Runtime,
                "the isolate stopped without an answer (engine failure); the server keeps serving, run the program again",
            )),
            Err(_) if self.stopped.is_cancelled() => shut_down(),
            Err(_) if within_caller => RunOutcome::failed(ProgramError::new(
                ErrorKind::Timeout,
                format!(
                    "the program ran past its time limit of {} ms inside a built-in that cannot be interrupted, and was abandoned",
                    limits.timeout.as_millis()
                ),
            )),
            Err(_) => {
                // Its thread (one of the pool's) runs on until the built-in ends: counted
                // until it answers.
                let abandoned = self.abandoned.clone();
                abandoned.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let _ = receiver.await;
                    abandoned.fetch_sub(1, Ordering::SeqCst);
                });
                RunOutcome::failed(ProgramError::new(
                    ErrorKind::Timeout,
                    format!(
                        "the program ran past its time limit of {} ms inside a built-in that cannot be interrupted, and was abandoned",
                        limits.timeout.as_millis()
                    ),
                ))
            }
        }
    }
}

/// Why a job was not taken.
pub(super) enum Refused {
    /// Every slot and queue place is taken.
    Full,
    /// The isolate threads are gone.
    Closed,
}

/// Where jobs go: isolate threads in this process, or worker processes.
#[derive(Debug)]
pub(super) enum Runner {
    Threads(Sender<Job>),
    Workers(Workers),
}

/// Jobs for worker processes: a slot each, the same caps as the isolate threads.
#[derive(Debug)]
pub(super) struct Workers {
    pub(super) pool: WorkerPool,
    pub(super) slots: Arc<tokio::sync::Semaphore>,
    /// Jobs running or waiting for a slot.
    pub(super) admitted: Arc<AtomicUsize>,
    /// Slots plus queue places.
    pub(super) capacity: usize,
}

impl Workers {
    fn submit(&self, job: Job) -> Result<(), Refused> {
        if self.admitted.fetch_add(1, Ordering::SeqCst) >= self.capacity {
            self.admitted.fetch_sub(1, Ordering::SeqCst);
            return Err(Refused::Full);
        }
        let (pool, slots, admitted) =
            (self.pool.clone(), self.slots.clone(), self.admitted.clone());
        tokio::spawn(async move {
            let _place = QueuePlace(admitted);
            let Ok(_slot) = slots.acquire_owned().await else {
                return;
            };
            if job.cancel.is_cancelled() || job.started.send(()).is_err() {
                return;
            }
            let outcome = pool.run(&job.request, &job.cancel, job.host).await;
            let _ = job.reply.send(outcome);
        });
        Ok(())
    }
}

impl Workers {
    /// Runs `job` at once, outside the slots: its caller holds one (see
    /// [`RunOptions::within_caller`]).
    fn submit_within_caller(&self, job: Job) {
        let pool = self.pool.clone();
        tokio::spawn(async move {
            if job.cancel.is_cancelled() || job.started.send(()).is_err() {
                return;
            }
            let outcome = pool.run(&job.request, &job.cancel, job.host).await;
            let _ = job.reply.send(outcome);
        });
    }
}

/// A job's place among those running or queued for a worker; dropping it frees it.
pub(super) struct QueuePlace(Arc<AtomicUsize>);

impl Drop for QueuePlace {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

pub(super) struct CancelOnDrop(CancelHandle);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}
