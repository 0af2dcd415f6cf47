//! The host side: a pool of pre-started, locked-down workers. A run takes a ready worker
//! (or starts one), sends it the program, answers its tool calls, and enforces the wall
//! clock with SIGKILL whatever the worker does. A worker that dies fails only its own run,
//! with kind `crashed`, and is replaced.

use std::{
    os::unix::process::ExitStatusExt,
    path::PathBuf,
    process::{ExitStatus, Stdio},
    sync::{
        Arc, Mutex,
        atomic::{AtomicUsize, Ordering},
    },
    time::Duration,
};

use futures::{StreamExt, stream::FuturesUnordered};
use tokio::process::{Child, ChildStdin, ChildStdout, Command};

use super::{
    IsolationError,
    lockdown::LockdownReport,
    protocol::{self, Frames, FromWorker, ProtocolError, ToWorker},
    worker::{Probe, WORKER_COMMAND, WorkerSpec},
};
use base64::Engine as _;

use crate::sandbox::{
    CancelHandle, CancelReason, Engine, EngineKind, ErrorKind, Limits, ProgramError, ReplyFuture,
    RunOutcome, RunRequest, ToolHost, ToolReply, cancel_message, cpu,
};

/// How long a worker may take from spawn to ready.
const START_TIMEOUT: Duration = Duration::from_secs(10);

/// Past the program's deadline, how long the host waits for the worker's own answer
/// (the engine stops programs itself) before it kills the worker.
const KILL_GRACE: Duration = Duration::from_millis(200);

/// Room beside the heap cap in a worker's address space: the binary, stacks, runtime.
const ADDRESS_SPACE_MARGIN: u64 = 1 << 30;

/// How workers are started.
#[derive(Debug, Clone)]
pub struct PoolSettings {
    /// The binary to start as a worker: this one.
    pub program: PathBuf,
    /// The engine workers run.
    pub engine: EngineKind,
    /// The largest limits any run may have: they size the workers' rlimits.
    pub limits: Limits,
    /// Ready workers kept waiting.
    pub size: usize,
    /// Programs one worker runs before it is replaced (1: a fresh process per run).
    pub reuse: u32,
    /// Whether waiting workers make their isolate ahead of the program, for the shape
    /// (bindings, limits) of the last program run.
    pub warm: bool,
    /// How long a program waiting on the host keeps the worker polling before it sleeps.
    pub spin: std::time::Duration,
    /// The time zone of programs' local time (`codemode.timeZone`; UTC by default).
    pub time_zone: String,
}

/// The pool's state at a moment (for metrics).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PoolHealth {
    /// Workers locked down and waiting for a program.
    pub ready: usize,
    /// Workers being started.
    pub starting: usize,
}

/// Pre-started, locked-down workers.
#[derive(Debug, Clone)]
pub struct WorkerPool {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    settings: PoolSettings,
    spec: String,
    idle: Mutex<Vec<Worker>>,
    starting: AtomicUsize,
    /// The shape of the last program, which new workers prepare their isolate for.
    template: Mutex<Option<Box<RunRequest>>>,
    /// The glue bytecode (base64), sent to each worker as its first message.
    glue: Option<String>,
}

#[derive(Debug)]
struct Worker {
    child: Child,
    /// Taken by a run's writer while the run lasts.
    stdin: Option<ChildStdin>,
    messages: Frames<ChildStdout>,
    runs_left: u32,
}

impl WorkerPool {
    /// Starts one worker and waits for it to be ready, so that a machine where the
    /// lockdown fails is found now (fail closed); then fills the pool in the background.
    pub async fn start(settings: PoolSettings) -> Result<(Self, LockdownReport), IsolationError> {
        // Compiled once here and handed to every worker: compiling it was most of a
        // worker's start.
        let glue = Engine::new(settings.engine)
            .compiled_glue()
            .map(|g| base64::engine::general_purpose::STANDARD.encode(g));
        let spec = worker_spec(&settings, None, glue.as_deref())?;
        let pool = Self {
            inner: Arc::new(Inner {
                settings,
                spec,
                idle: Mutex::new(Vec::new()),
                starting: AtomicUsize::new(0),
                template: Mutex::new(None),
                glue,
            }),
        };
        let (worker, report) = pool.inner.spawn().await?;
        pool.inner.put_back(worker);
        pool.refill();
        Ok((pool, report))
    }

    /// Runs `request` in a worker.
    pub async fn run(
        &self,
        request: &RunRequest,
        cancel: &CancelHandle,
        host: Arc<dyn ToolHost>,
    ) -> RunOutcome {
        if self.inner.settings.warm {
            self.inner.remember_shape(request);
        }
        // A worker that turns out dead before it took the program (killed while it
        // waited, between the pool's check and the hand-over) costs nothing of the run:
        // the program goes to the next worker.
        let mut attempts = 0;
        let (mut worker, outcome) = loop {
            attempts += 1;
            let taken = self.inner.take();
            let mut worker = match taken {
                Some(worker) => worker,
                None => match self.inner.spawn().await {
                    Ok((worker, _)) => worker,
                    Err(err) => {
                        return failed(
                            ErrorKind::Crashed,
                            format!(
                                "no sandboxed worker could be started ({err}); nothing was run. The server keeps serving: run the program again"
                            ),
                        );
                    }
                },
            };
            match run_in(&mut worker, request, cancel, host.clone()).await {
                Ran::Unstarted(_) if attempts < 3 => {
                    tracing::warn!(
                        "a sandboxed worker was dead before it took its program; the program goes to another"
                    );
                    retire(worker);
                }
                ran => break (worker, ran),
            }
        };
        // The replacement starts after the run, not beside it: on a small machine its
        // start-up would take CPU from the very program it could not serve anyway.
        self.refill();
        match outcome {
            Ran::Answered(outcome) if worker.runs_left > 1 => {
                worker.runs_left -= 1;
                let inner = self.inner.clone();
                tokio::spawn(async move {
                    // A reused worker is ready again once it says so.
                    if let Ok(FromWorker::Ready(_)) = protocol::read(&mut worker.messages).await {
                        inner.put_back(worker);
                    } else {
                        retire(worker);
                    }
                });
                *outcome
            }
            Ran::Answered(outcome) => {
                retire(worker);
                *outcome
            }
            Ran::Failed(outcome) | Ran::Unstarted(outcome) => {
                retire(worker);
                outcome
            }
        }
    }

    /// Starts workers that each try one forbidden thing once locked down, and reports
    /// how each ended: the proof that the lockdown holds on this machine.
    pub async fn self_test(&self) -> Vec<(String, Result<String, String>)> {
        let mut results = Vec::new();
        for (probe, what) in [
            (Probe::Open, "open a file"),
            (Probe::Socket, "create a socket"),
            (Probe::Exec, "start a program"),
            (Probe::Environment, "read the host's environment"),
        ] {
            let outcome = self.inner.probe(probe).await;
            let verdict = match (probe, outcome) {
                (Probe::Environment, Ok(status)) if status.code() == Some(0) => {
                    Ok("refused: the worker's environment is empty".to_string())
                }
                (Probe::Environment, Ok(status)) => {
                    Err(format!("the worker ended {}", describe(status)))
                }
                (_, Ok(status)) if status.signal() == Some(libc::SIGSYS) => {
                    Ok("refused: the worker was killed by seccomp (SIGSYS)".to_string())
                }
                (_, Ok(status)) => Err(format!(
                    "NOT refused: the worker ended {}",
                    describe(status)
                )),
                (_, Err(err)) => Err(format!("the probe could not run: {err}")),
            };
            results.push((what.to_string(), verdict));
        }
        results
    }

    /// How many workers wait ready, and how many are being started.
    pub fn health(&self) -> PoolHealth {
        PoolHealth {
            ready: self.inner.idle.lock().map_or(0, |idle| idle.len()),
            starting: self.inner.starting.load(Ordering::SeqCst),
        }
    }

    /// Tops the pool up to its size in the background.
    fn refill(&self) {
        let inner = &self.inner;
        loop {
            let waiting = inner.idle.lock().map_or(0, |idle| idle.len());
            let starting = inner.starting.load(Ordering::SeqCst);
            if waiting + starting >= inner.settings.size {
                return;
            }
            inner.starting.fetch_add(1, Ordering::SeqCst);
            let inner = inner.clone();
            tokio::spawn(async move {
                match inner.spawn().await {
                    Ok((worker, _)) => inner.put_back(worker),
                    Err(err) => tracing::warn!("could not start a sandboxed worker: {err}"),
                }
                inner.starting.fetch_sub(1, Ordering::SeqCst);
            });
        }
    }
}

impl Inner {
    /// A waiting worker that is still alive: one that died while it waited (killed by an
    /// operator or the OOM killer) is retired, never handed a program.
    fn take(&self) -> Option<Worker> {
        loop {
            let mut worker = self.idle.lock().ok()?.pop()?;
            match worker.child.try_wait() {
                Ok(None) => return Some(worker),
                Ok(Some(status)) => {
                    tracing::warn!(
                        "a waiting sandboxed worker had died ({}); it is replaced",
                        describe(status)
                    );
                    retire(worker);
                }
                Err(_) => retire(worker),
            }
        }
    }

    fn put_back(&self, worker: Worker) {
        match self.idle.lock() {
            Ok(mut idle) => idle.push(worker),
            Err(_) => retire(worker),
        }
    }

    fn remember_shape(&self, request: &RunRequest) {
        if let Ok(mut template) = self.template.lock() {
            let same = template.as_ref().is_some_and(|t| {
                t.bindings == request.bindings
                    && t.fetch == request.fetch
                    && t.limits == request.limits
            });
            if !same {
                *template = Some(Box::new(RunRequest {
                    js: String::new(),
                    ..request.clone()
                }));
            }
        }
    }

    /// Starts a worker and waits for its ready message; with `warm`, asks it to make its
    /// isolate for the last program's shape while it waits in the pool.
    async fn spawn(&self) -> Result<(Worker, LockdownReport), IsolationError> {
        let mut child = command(&self.settings.program, &self.spec)
            .spawn()
            .map_err(IsolationError::Spawn)?;
        forward_messages(&mut child);
        // Every way out below reaps the child: one dropped unreaped after it died stays a
        // zombie until some later child's exit happens to make tokio look again.
        let (Some(stdin), Some(stdout)) = (child.stdin.take(), child.stdout.take()) else {
            let _ = child.kill().await;
            return Err(IsolationError::Spawn(std::io::Error::other("no pipes")));
        };
        let mut messages = protocol::frames(stdout);
        let mut stdin = stdin;
        if let Some(glue) = &self.glue
            && protocol::write(&mut stdin, &ToWorker::Glue(glue.clone()))
                .await
                .is_err()
        {
            // It died before reading: its exit says why (a lockdown that failed, ...).
            let status = child.wait().await.map_err(IsolationError::Spawn)?;
            return Err(IsolationError::WorkerFailed(describe(status)));
        }
        let ready = tokio::time::timeout(START_TIMEOUT, protocol::read(&mut messages)).await;
        match ready {
            Ok(Ok(FromWorker::Ready(report))) => {
                let template = self.template.lock().ok().and_then(|t| t.clone());
                if let Some(template) = template
                    && let Err(err) =
                        protocol::write(&mut stdin, &ToWorker::Prepare(template)).await
                {
                    // It died right after it was ready (killed, say).
                    let _ = child.kill().await;
                    return Err(IsolationError::WorkerFailed(err.to_string()));
                }
                Ok((
                    Worker {
                        child,
                        stdin: Some(stdin),
                        messages,
                        runs_left: self.settings.reuse.max(1),
                    },
                    report,
                ))
            }
            Ok(_) => {
                let status = child.wait().await.map_err(IsolationError::Spawn)?;
                Err(IsolationError::WorkerFailed(describe(status)))
            }
            Err(_) => {
                let _ = child.kill().await;
                Err(IsolationError::WorkerFailed(format!(
                    "not ready within {} s",
                    START_TIMEOUT.as_secs()
                )))
            }
        }
    }

    async fn probe(&self, probe: Probe) -> Result<ExitStatus, IsolationError> {
        let spec = worker_spec(&self.settings, Some(probe), None)?;
        let mut child = command(&self.settings.program, &spec)
            .spawn()
            .map_err(IsolationError::Spawn)?;
        forward_messages(&mut child);
        drop(child.stdin.take());
        match tokio::time::timeout(START_TIMEOUT, child.wait()).await {
            Ok(status) => status.map_err(IsolationError::Spawn),
            Err(_) => {
                let _ = child.kill().await;
                Err(IsolationError::WorkerFailed("the probe did not end".into()))
            }
        }
    }
}

fn worker_spec(
    settings: &PoolSettings,
    probe: Option<Probe>,
    glue: Option<&str>,
) -> Result<String, IsolationError> {
    let spec = WorkerSpec {
        engine: settings.engine,
        address_space_bytes: settings.limits.heap_bytes as u64 + ADDRESS_SPACE_MARGIN,
        // Each run may use its whole wall clock on the CPU.
        cpu_seconds: (settings.limits.timeout.as_secs() + 2) * u64::from(settings.reuse.max(1)) + 5,
        runs: settings.reuse.max(1),
        probe,
        glue_follows: probe.is_none() && glue.is_some(),
        spin_micros: u64::try_from(settings.spin.as_micros()).unwrap_or(u64::MAX),
        time_zone: settings.time_zone.clone(),
    };
    serde_json::to_string(&spec).map_err(|e| IsolationError::Spawn(std::io::Error::other(e)))
}

/// The worker's command: nothing of the host's environment, pipes for the protocol, and a
/// pipe for the worker's own messages, which [`forward_messages`] puts into the host's
/// log. Not the host's stderr itself: that may be a file, and a worker may not write files
/// (its file-size limit is 0: the write would kill it).
fn command(program: &PathBuf, spec: &str) -> Command {
    let mut command = Command::new(program);
    command
        .arg(WORKER_COMMAND)
        .arg(spec)
        .env_clear()
        .current_dir("/")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    command
}

/// Lines a worker may put into the host's log, each at most [`MESSAGE_CHARS`]: a worker
/// cannot flood it.
const MESSAGES_PER_WORKER: usize = 100;
const MESSAGE_CHARS: usize = 2_000;

/// Puts what the worker writes to its stderr (its own failure messages, an engine's
/// warnings) into the host's log, tagged with the worker's pid.
fn forward_messages(child: &mut tokio::process::Child) {
    use futures::StreamExt;
    let (Some(stderr), pid) = (child.stderr.take(), child.id()) else {
        return;
    };
    tokio::spawn(async move {
        // A longer line is an error the stream skips past, never a buffer that grows.
        let codec = tokio_util::codec::LinesCodec::new_with_max_length(MESSAGE_CHARS);
        let mut lines = tokio_util::codec::FramedRead::new(stderr, codec);
        let mut forwarded = 0;
        while let Some(line) = lines.next().await {
            let line = line.unwrap_or_else(|e| format!("(a message that was not shown: {e})"));
            if forwarded < MESSAGES_PER_WORKER {
                tracing::warn!(worker = pid, "worker: {line}");
            } else if forwarded == MESSAGES_PER_WORKER {
                tracing::warn!(worker = pid, "worker: further messages are not logged");
            }
            forwarded += 1;
        }
        // The stream ends at the worker's exit, or at an over-long line: what follows is
        // read and dropped, so a worker never blocks on a full pipe.
        let _ = tokio::io::copy(&mut lines.into_inner(), &mut tokio::io::sink()).await;
    });
}

enum Ran {
    /// The worker answered and can be reused.
    Answered(Box<RunOutcome>),
    /// The worker died, was killed, or broke the protocol.
    Failed(RunOutcome),
    /// The worker was dead before it took the program: nothing of it ran.
    Unstarted(RunOutcome),
}

async fn run_in(
    worker: &mut Worker,
    request: &RunRequest,
    cancel: &CancelHandle,
    host: Arc<dyn ToolHost>,
) -> Ran {
    let Some(mut stdin) = worker.stdin.take() else {
        return Ran::Unstarted(crashed(worker).await);
    };
    // Read from outside, before the worker has the program and as soon as it is done
    // with it (answered, or about to be killed): what it spent on this program alone,
    // reused or not, as the kernel counts it.
    let pid = worker.child.id();
    let cpu_before = pid.and_then(cpu::of_process);
    if protocol::write(&mut stdin, &ToWorker::Run(Box::new(request.clone())))
        .await
        .is_err()
    {
        return Ran::Unstarted(crashed(worker).await);
    }
    // Replies go out through a writer of their own, so this loop never waits on a full
    // pipe: a worker writing calls into a full pipe of its own while the host waits to
    // write it replies would otherwise hold both for ever (and the run's slot with them).
    let (outbox, mut queued) = tokio::sync::mpsc::unbounded_channel::<ToWorker>();
    let writer = tokio::spawn(async move {
        while let Some(message) = queued.recv().await {
            // A failed write means the worker died; its pipe's end says so to the reader.
            if protocol::write(&mut stdin, &message).await.is_err() {
                break;
            }
        }
        stdin
    });
    let mut ran = exchange(worker, request, cancel, host, &outbox, (pid, cpu_before)).await;
    drop(outbox);
    if let Ran::Answered(outcome) = &mut ran {
        outcome.cpu = cpu::spent(cpu_before, pid.and_then(cpu::of_process));
    }
    if let Ran::Answered(_) = ran {
        // Replies still queued are written (a reused worker skips those of a finished
        // run), then the pipe is the worker's again for its next program.
        worker.stdin = writer.await.ok();
    } else {
        writer.abort();
    }
    ran
}

/// The run's messages: calls and fetches from the worker answered through `outbox`, until
/// the worker answers, dies, or the run's clock or cancellation ends it.
async fn exchange(
    worker: &mut Worker,
    request: &RunRequest,
    cancel: &CancelHandle,
    host: Arc<dyn ToolHost>,
    outbox: &tokio::sync::mpsc::UnboundedSender<ToWorker>,
    (pid, cpu_before): (Option<u32>, Option<std::time::Duration>),
) -> Ran {
    // A run the host ends (its clock, a cancellation) is charged up to its kill.
    let charged = |mut outcome: RunOutcome| {
        outcome.cpu = cpu::spent(cpu_before, pid.and_then(cpu::of_process));
        outcome
    };
    // The run's clock, which stands still while the host waits for a person's answer to
    // one of its calls: the kill timer waits with it, and the worker is told.
    let clock = cancel.clock();
    clock.start(request.limits.timeout);
    let deadline = async {
        clock.expiry().await;
        tokio::time::sleep(KILL_GRACE).await;
    };
    tokio::pin!(deadline);
    let mut clock_changes = clock.watch();
    let mut told_held = false;
    // Polled here rather than spawned: a reply is queued the moment it exists.
    let mut replies = FuturesUnordered::new();
    loop {
        tokio::select! {
            message = protocol::read(&mut worker.messages) => match message {
                Ok(FromWorker::Call { id, call }) => {
                    replies.push(answered(id, host.call_tool(call)));
                }
                // The host checks every request against the egress rules, whatever the worker says.
                Ok(FromWorker::Fetch { id, request }) => {
                    replies.push(answered(id, host.fetch(request)));
                }
                Ok(FromWorker::Unsent { call, fetch }) => host.unsent(call, fetch),
                Ok(FromWorker::Done(outcome)) => return Ran::Answered(outcome),
                Ok(FromWorker::Ready(_)) | Err(ProtocolError::TooLarge(_) | ProtocolError::Malformed(_)) => {
                    let _ = worker.child.start_kill();
                    return Ran::Failed(failed(
                        ErrorKind::Crashed,
                        "the sandboxed worker running this program broke the host protocol and was killed; the server keeps serving: run the program again",
                    ));
                }
                // Once the program was handed over, the worker's death is the run's: a program
                // that only computes says nothing before it could be killed, so nothing
                // tells a death before it started from one after.
                // Read before the worker is reaped, while its clock is still there.
                Err(ProtocolError::Closed | ProtocolError::Io(_)) => {
                    let cpu = cpu::spent(cpu_before, pid.and_then(cpu::of_process));
                    let mut outcome = crashed(worker).await;
                    outcome.cpu = cpu;
                    return Ran::Failed(outcome);
                }
            },
            Some((id, reply)) = replies.next() => {
                let _ = outbox.send(ToWorker::Reply { id, reply });
            }
            Ok(()) = clock_changes.changed() => {
                let held = clock.is_held();
                if held != told_held {
                    told_held = held;
                    let _ = outbox.send(ToWorker::Clock { held });
                }
            }
            () = &mut deadline => {
                let outcome = charged(failed(
                    ErrorKind::Timeout,
                    format!(
                        "the program ran past its time limit of {} ms and its worker process was killed; look for endless loops or huge built-in operations, or do less per execution",
                        request.limits.timeout.as_millis()
                    ),
                ));
                let _ = worker.child.start_kill();
                return Ran::Failed(outcome);
            }
            () = cancel.cancelled() => {
                let outcome = charged(failed(
                    ErrorKind::Cancelled,
                    cancel_message(cancel.reason().unwrap_or(CancelReason::Client)),
                ));
                let _ = worker.child.start_kill();
                return Ran::Failed(outcome);
            }
        }
    }
}

async fn answered(id: u64, reply: ReplyFuture) -> (u64, ToolReply) {
    (id, reply.await)
}

/// The worker's pipe closed before it answered: it died. Says how.
async fn crashed(worker: &mut Worker) -> RunOutcome {
    crashed_with_status(worker).await.0
}

/// [`crashed`], with how the worker ended if it did.
async fn crashed_with_status(worker: &mut Worker) -> (RunOutcome, Option<ExitStatus>) {
    let (how, status) =
        match tokio::time::timeout(Duration::from_secs(2), worker.child.wait()).await {
            Ok(Ok(status)) => (describe(status), Some(status)),
            _ => {
                let _ = worker.child.start_kill();
                ("and closed its pipe".to_string(), None)
            }
        };
    if status.is_some_and(|status| status.signal() == Some(libc::SIGSYS)) {
        return (
            failed(
                ErrorKind::Crashed,
                format!(
                    "the sandbox stopped the program: it made a forbidden system call (the worker was {how}). Programs have no file system, network, processes or clock beyond what the sandbox gives; only this run is lost and the server keeps serving"
                ),
            ),
            status,
        );
    }
    let outcome = failed(
        ErrorKind::Crashed,
        format!(
            "the sandboxed worker process running this program died ({how}) before it answered; only this run is lost and the server keeps serving. Run the program again; if it dies again, the program triggers an engine failure: change the failing part"
        ),
    );
    (outcome, status)
}

/// How a worker ended, in words.
fn describe(status: ExitStatus) -> String {
    match (status.code(), status.signal()) {
        (Some(code), _) => format!("exit code {code}"),
        (None, Some(signal)) => {
            let name = match signal {
                libc::SIGKILL => "SIGKILL",
                libc::SIGSEGV => "SIGSEGV, a memory fault",
                libc::SIGABRT => "SIGABRT, an abort",
                libc::SIGSYS => "SIGSYS, a forbidden system call",
                libc::SIGXCPU => "SIGXCPU, its CPU-time limit",
                libc::SIGBUS => "SIGBUS, a memory fault",
                _ => "a signal",
            };
            format!("killed by signal {signal}, {name}")
        }
        (None, None) => "ended".to_string(),
    }
}

/// Ends a worker and reaps it, off the run's path.
fn retire(mut worker: Worker) {
    tokio::spawn(async move {
        drop(worker.stdin.take());
        // A one-shot worker exits by itself once its answer is written; give it a moment.
        if tokio::time::timeout(Duration::from_secs(1), worker.child.wait())
            .await
            .is_err()
        {
            let _ = worker.child.kill().await;
        }
    });
}

fn failed(kind: ErrorKind, message: impl Into<String>) -> RunOutcome {
    RunOutcome::failed(ProgramError::new(kind, message))
}
