//! The worker process: the same binary, started by the pool as `codemode-mcp __worker
//! SPEC`. It locks itself down, warms its engine up, says it is ready, runs its programs
//! (one by default) and exits. Its only channel is its stdin and stdout pipes to the host;
//! the host answers its tool calls.

use std::{
    collections::HashMap,
    os::fd::{FromRawFd, OwnedFd},
    sync::Arc,
};

use base64::Engine as _;
use serde::{Deserialize, Serialize};
use tokio::sync::{mpsc, oneshot};

use super::{
    lockdown::{self, LockdownReport, ResourceLimits},
    protocol::{self, FromWorker, ProtocolError, ToWorker},
};
use crate::sandbox::{
    CancelHandle, Engine, EngineKind, Limits, NoTools, ReplyFuture, RunRequest, ToolCall, ToolHost,
    ToolReply, spin_then_sleep,
};

/// The first argument that makes the binary a worker.
pub const WORKER_COMMAND: &str = "__worker";

/// What a worker is started with (its second argument, as JSON).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub(super) struct WorkerSpec {
    pub(super) engine: EngineKind,
    pub(super) address_space_bytes: u64,
    pub(super) cpu_seconds: u64,
    /// Programs it runs before it exits.
    pub(super) runs: u32,
    /// Self-test: after the lockdown, do this forbidden thing instead of serving.
    pub(super) probe: Option<Probe>,
    /// Whether the host sends the glue it compiled ([`ToWorker::Glue`]) as its first
    /// message, so the worker need not compile it.
    #[serde(default)]
    pub(super) glue_follows: bool,
    /// Microseconds a program waiting on the host keeps the worker polling.
    #[serde(default)]
    pub(super) spin_micros: u64,
    /// The time zone of local-time methods (`Date.prototype.getHours`, `toString`, ...).
    #[serde(default = "utc")]
    pub(super) time_zone: String,
}

fn utc() -> String {
    "UTC".to_string()
}

/// What a self-test worker tries once locked down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub(super) enum Probe {
    /// Open a file: seccomp must kill it.
    Open,
    /// Create a socket: seccomp must kill it.
    Socket,
    /// Start a program: seccomp must kill it.
    Exec,
    /// Exit 0 when its environment is empty (the host passes none of its own) but for the
    /// engine's own settings.
    Environment,
}

/// Exit codes of a worker that did not serve.
mod exit {
    pub(super) const BAD_SPEC: i32 = 2;
    pub(super) const LOCKDOWN_FAILED: i32 = 3;
    pub(super) const PROTOCOL: i32 = 4;
    /// A probe's forbidden call returned instead of killing the worker.
    pub(super) const PROBE_SURVIVED: i32 = 10;
    pub(super) const ENVIRONMENT_NOT_EMPTY: i32 = 11;
}

/// Runs the worker; returns its exit code. Call first thing in `main`, before any thread
/// exists: the lockdown needs a single-threaded process.
pub fn worker_main(spec: &str) -> i32 {
    // The default panic report reads the working directory for its backtrace, which the
    // lockdown forbids: the worker would die of SIGSYS and the panic's message be lost.
    std::panic::set_hook(Box::new(|info| eprintln!("codemode-mcp worker: {info}")));
    let spec: WorkerSpec = match serde_json::from_str(spec) {
        Ok(spec) => spec,
        Err(err) => {
            eprintln!("codemode-mcp worker: bad spec: {err}");
            return exit::BAD_SPEC;
        }
    };
    // Nothing inherited but stdio: a descriptor the host's own parent leaked to it without
    // close-on-exec must not reach the worker.
    // SAFETY: close_range only closes descriptors; none above 2 is in use yet.
    unsafe {
        libc::syscall(libc::SYS_close_range, 3u32, u32::MAX, 0u32);
    }
    // The protocol owns stdout; anything else printing goes to stderr.
    let protocol_out = match crate::stdio::take_stdout() {
        Ok(file) => OwnedFd::from(file),
        Err(err) => {
            eprintln!("codemode-mcp worker: stdout: {err}");
            return exit::LOCKDOWN_FAILED;
        }
    };
    // A memory fault ends the worker on the spot: Rust's handler (there to report stack
    // overflows) would run code in a process whose memory may be corrupt, and survives a
    // fault it did not cause.
    // SAFETY: resetting signal dispositions to their defaults.
    unsafe {
        libc::signal(libc::SIGSEGV, libc::SIG_DFL);
        libc::signal(libc::SIGBUS, libc::SIG_DFL);
    }
    // SAFETY: fd 0 is this process's stdin, the pipe from the host, owned from here on.
    let protocol_in = unsafe { OwnedFd::from_raw_fd(0) };
    fix_time_zone(&spec.time_zone);
    let (rlimits, namespaces, landlock) = match lockdown::restrict_process(ResourceLimits {
        address_space_bytes: spec.address_space_bytes,
        cpu_seconds: spec.cpu_seconds,
    }) {
        Ok(layers) => layers,
        Err(err) => {
            eprintln!("codemode-mcp worker: {err}");
            return exit::LOCKDOWN_FAILED;
        }
    };
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("codemode-mcp worker: runtime: {err}");
            return exit::LOCKDOWN_FAILED;
        }
    };
    // Replies to the program's tool calls come over the pipe: spinning briefly after each
    // wake spares most of them the wake of a sleeping thread.
    let spin = std::time::Duration::from_micros(spec.spin_micros);
    runtime.block_on(spin_then_sleep(spin, async move {
        let (input, output) = match (
            tokio::net::unix::pipe::Receiver::from_owned_fd(protocol_in),
            tokio::net::unix::pipe::Sender::from_owned_fd(protocol_out),
        ) {
            (Ok(input), Ok(output)) => (input, output),
            (Err(err), _) | (_, Err(err)) => {
                eprintln!("codemode-mcp worker: the host pipes: {err}");
                return exit::LOCKDOWN_FAILED;
            }
        };
        Engine::new(spec.engine).before_lockdown();
        let seccomp = match lockdown::restrict_syscalls() {
            Ok(layer) => layer,
            Err(err) => {
                eprintln!("codemode-mcp worker: {err}");
                return exit::LOCKDOWN_FAILED;
            }
        };
        if let Some(probe) = spec.probe {
            return run_probe(probe);
        }
        let report = LockdownReport {
            rlimits,
            namespaces,
            landlock,
            seccomp,
        };
        serve(spec, report, input, output).await
    }))
}

unsafe extern "C" {
    /// POSIX's `tzset` (time.h), which the libc crate does not bind.
    fn tzset();
}

/// Local time (`new Date().getHours()`, `toString()`, `getTimezoneOffset()`) goes through
/// libc's `localtime_r`, which reads the zone's file the first time: once locked down, that
/// open is a forbidden system call and kills the worker. So the zone is fixed through `TZ`
/// and loaded now, while the file can still be read; libc keeps it for the process's life.
fn fix_time_zone(zone: &str) {
    // SAFETY: the worker is still single-threaded (no runtime exists yet), so nothing
    // reads the environment while it changes; tzset and localtime_r get valid pointers.
    unsafe {
        std::env::set_var("TZ", zone);
        tzset();
        let now = libc::time(std::ptr::null_mut());
        let mut local: libc::tm = std::mem::zeroed();
        libc::localtime_r(&now, &mut local);
    }
}

/// Does the forbidden thing. Seccomp should kill the worker on the spot.
fn run_probe(probe: Probe) -> i32 {
    // SAFETY: each call is made to be refused; the pointers are valid C strings.
    unsafe {
        match probe {
            Probe::Open => {
                libc::open(c"/etc/hostname".as_ptr(), libc::O_RDONLY);
            }
            Probe::Socket => {
                libc::socket(libc::AF_INET, libc::SOCK_STREAM, 0);
            }
            Probe::Exec => {
                let argv = [c"/bin/true".as_ptr(), std::ptr::null()];
                let envp = [std::ptr::null()];
                libc::execve(c"/bin/true".as_ptr(), argv.as_ptr(), envp.as_ptr());
            }
            Probe::Environment => {
                // Empty but for the engine's own settings and the time zone, which this
                // binary set itself.
                let own = crate::sandbox::process_environment();
                return if std::env::vars_os().all(|(name, value)| {
                    name == "TZ" || own.iter().any(|(n, v)| name == *n && value == *v)
                }) {
                    0
                } else {
                    exit::ENVIRONMENT_NOT_EMPTY
                };
            }
        }
    }
    exit::PROBE_SURVIVED
}

/// What the program asks of the host.
enum Ask {
    Call(ToolCall),
    Fetch(String),
}

/// Answers tool calls and fetches by asking the host over the pipe.
struct PipeHost(mpsc::UnboundedSender<(Ask, oneshot::Sender<ToolReply>)>);

impl ToolHost for PipeHost {
    fn call_tool(&self, call: ToolCall) -> ReplyFuture {
        self.ask(Ask::Call(call))
    }

    fn fetch(&self, request: String) -> ReplyFuture {
        self.ask(Ask::Fetch(request))
    }
}

impl PipeHost {
    fn ask(&self, ask: Ask) -> ReplyFuture {
        let (reply, answer) = oneshot::channel();
        let sent = self.0.send((ask, reply));
        Box::pin(async move {
            match (sent, answer.await) {
                (Ok(()), Ok(reply)) => reply,
                _ => ToolReply::Err(crate::sandbox::ToolFailure {
                    message: "the host stopped answering tool calls".into(),
                    schema_path: None,
                }),
            }
        })
    }
}

async fn serve(
    spec: WorkerSpec,
    report: LockdownReport,
    input: tokio::net::unix::pipe::Receiver,
    mut output: tokio::net::unix::pipe::Sender,
) -> i32 {
    // Everything goes out through one writer, in order, so that the loop below never waits
    // on a full pipe and always reads the host's replies: a host waiting to write replies
    // while this worker waits to write calls would hold both for ever.
    let (outbox, mut queued) = mpsc::unbounded_channel::<FromWorker>();
    let writer = tokio::spawn(async move {
        while let Some(message) = queued.recv().await {
            if protocol::write(&mut output, &message).await.is_err() {
                return false;
            }
        }
        true
    });
    let code = serve_runs(spec, report, input, &outbox).await;
    drop(outbox);
    // The last answer must be out before the worker exits.
    match writer.await {
        Ok(true) => code,
        _ => 0,
    }
}

async fn serve_runs(
    spec: WorkerSpec,
    report: LockdownReport,
    input: tokio::net::unix::pipe::Receiver,
    output: &mpsc::UnboundedSender<FromWorker>,
) -> i32 {
    let engine = Engine::new(spec.engine);
    let mut input = protocol::frames(input);
    if spec.glue_follows {
        match protocol::read::<_, ToWorker>(&mut input).await {
            Ok(ToWorker::Glue(glue)) => {
                if let Ok(glue) = base64::engine::general_purpose::STANDARD.decode(glue) {
                    engine.adopt_glue(glue);
                }
            }
            Err(ProtocolError::Closed) => return 0,
            Ok(_) | Err(_) => return exit::PROTOCOL,
        }
    }
    // Loads the glue and faults in the engine before the first program arrives, so that
    // cost is paid while the worker waits in the pool.
    let warm_up = RunRequest {
        js: "(async () => {\nreturn 1\n})".into(),
        program_lines: 1,
        bindings: Vec::new(),
        fetch: false,
        limits: Limits::default(),
    };
    engine
        .run(&warm_up, &CancelHandle::default(), Arc::new(NoTools))
        .await;

    let mut warm = None;
    let mut warming = false;
    let runs = spec.runs.max(1);
    for run_number in 1..=runs {
        if output.send(FromWorker::Ready(report.clone())).is_err() {
            return 0;
        }
        let request = loop {
            match protocol::read::<_, ToWorker>(&mut input).await {
                Ok(ToWorker::Run(request)) => break request,
                Ok(ToWorker::Prepare(template)) => {
                    warming = true;
                    warm = engine.prepare(&template).await;
                }
                // The host closed the pipe: the pool is shutting down.
                Err(ProtocolError::Closed) => return 0,
                // A late reply to a call of the program before, or word of its clock:
                // nobody waits for it.
                Ok(ToWorker::Reply { .. } | ToWorker::Clock { .. }) => {}
                Ok(ToWorker::Glue(_)) | Err(_) => return exit::PROTOCOL,
            }
        };
        let (calls_sender, mut calls) = mpsc::unbounded_channel();
        let host = Arc::new(PipeHost(calls_sender));
        let cancel = CancelHandle::default();
        let run = engine.run_then_retire(warm.take(), &request, &cancel, host);
        tokio::pin!(run);
        let mut pending: HashMap<u64, oneshot::Sender<ToolReply>> = HashMap::new();
        let mut next_id = 0u64;
        // Open while the host says the run's clock stands still.
        let mut held = None;
        let (outcome, retired) = loop {
            tokio::select! {
                ran = &mut run => break ran,
                Some((ask, reply)) = calls.recv() => {
                    next_id += 1;
                    pending.insert(next_id, reply);
                    let id = next_id;
                    let message = match ask {
                        Ask::Call(call) => FromWorker::Call { id, call },
                        Ask::Fetch(request) => FromWorker::Fetch { id, request },
                    };
                    if output.send(message).is_err() {
                        return 0;
                    }
                }
                message = protocol::read::<_, ToWorker>(&mut input) => match message {
                    Ok(ToWorker::Reply { id, reply }) => {
                        if let Some(waiting) = pending.remove(&id) {
                            let _ = waiting.send(reply);
                        }
                    }
                    Ok(ToWorker::Clock { held: true }) => {
                        held.get_or_insert_with(|| cancel.clock().hold());
                    }
                    Ok(ToWorker::Clock { held: false }) => held = None,
                    Err(ProtocolError::Closed) => return 0,
                    Ok(ToWorker::Run(_) | ToWorker::Prepare(_) | ToWorker::Glue(_)) | Err(_) => return exit::PROTOCOL,
                },
            }
        };
        // Calls the program made that the loop had not sent when the program ended are
        // told to the host before the answer, as not sent: the host records every call a
        // program made, and performs none after its program ended.
        while let Ok((ask, _reply)) = calls.try_recv() {
            let message = match ask {
                // A refusal the glue reports is no call: the host only records it, as it
                // would have had it gone out in time.
                Ask::Call(call) if call.arguments.starts_with('\u{0}') => {
                    next_id += 1;
                    FromWorker::Call { id: next_id, call }
                }
                Ask::Call(call) => FromWorker::Unsent { call, fetch: false },
                Ask::Fetch(request) => FromWorker::Unsent {
                    call: ToolCall {
                        namespace: String::new(),
                        tool: String::new(),
                        arguments: request,
                        site: None,
                    },
                    fetch: true,
                },
            };
            if output.send(message).is_err() {
                return 0;
            }
        }
        if output.send(FromWorker::Done(Box::new(outcome))).is_err() {
            return 0;
        }
        // The answer is out; freeing the isolate no longer delays it.
        drop(retired);
        // A reused worker makes its next isolate while it waits, for this program's shape.
        if warming && run_number < runs {
            warm = engine.prepare(&request).await;
        }
    }
    0
}
