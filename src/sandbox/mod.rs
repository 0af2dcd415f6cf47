//! Isolates: one fresh, limited JS isolate per program.
//!
//! The contract of this module is made of plain data: a [`RunRequest`] goes in, a
//! [`RunOutcome`] comes out, both serialisable, so that an isolate can live in another
//! process without the callers noticing. Engine-specific code lives in `engine/<name>/`;
//! the JS glue every engine installs (console, timers, result conversion) is in `glue/`.

mod clock;
pub mod cpu;
mod engine;
pub(crate) mod glue;
mod host;
mod logs;
mod spin;
mod stack;

use std::time::Duration;

use serde::{Deserialize, Serialize};

pub use engine::{
    Engine, EngineKind, RetiredIsolate, WarmIsolate, configure_process_environment,
    process_environment,
};

/// The JS glue as one ES module's source, for the benchmark that measures what compiling
/// it per isolate would cost.
#[doc(hidden)]
pub fn glue_module_source() -> String {
    glue::module_source()
}
pub use clock::{Held, RunClock};
pub use host::{Alias, Binding, NoTools, ReplyFuture, ToolCall, ToolFailure, ToolHost, ToolReply};
pub(crate) use logs::floor_char_boundary;
pub use logs::{LogEntry, LogLevel};
pub use spin::{SPIN, SpinThenSleep, spin_then_sleep};

use crate::transpile::Position;

/// Per-execution limits, enforced inside the isolate and by the host around it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Limits {
    /// Wall clock for the whole execution, host calls and timers included.
    pub timeout: Duration,
    /// Cap on the isolate's heap, in bytes.
    pub heap_bytes: usize,
    /// Cap on the JS stack, in bytes.
    pub stack_bytes: usize,
    /// Cap on captured console output, in bytes.
    pub output_bytes: usize,
    /// Cap on the JSON text of the returned value, in bytes.
    pub result_bytes: usize,
    /// Tool calls one execution may make; the host refuses the ones past it.
    pub tool_calls: u32,
    /// Calls of any one tool one execution may make.
    pub calls_per_tool: u32,
    /// Bytes of tool results one execution may receive.
    pub received_bytes: usize,
    /// `fetch` requests one execution may make.
    #[serde(default = "Limits::default_fetches")]
    pub fetches: u32,
}

impl Limits {
    fn default_fetches() -> u32 {
        100
    }
}

impl Default for Limits {
    fn default() -> Self {
        Self {
            timeout: Duration::from_secs(30),
            heap_bytes: 64 << 20,
            stack_bytes: 512 << 10,
            output_bytes: 1 << 20,
            result_bytes: 256 << 10,
            tool_calls: 1_000,
            calls_per_tool: 1_000,
            received_bytes: 64 << 20,
            fetches: Self::default_fetches(),
        }
    }
}

/// One program to run.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunRequest {
    /// JavaScript from [`crate::transpile`]: an expression evaluating to an async function.
    pub js: String,
    /// Lines in the agent's source, to clamp positions that fall on the wrapper.
    pub program_lines: u32,
    /// The `tools` the program can call.
    pub bindings: Vec<Binding>,
    /// Whether the program gets `fetch` (the host still checks every request).
    #[serde(default)]
    pub fetch: bool,
    /// Limits for this run.
    pub limits: Limits,
}

/// What a run produced: a value or an error, and the console output either way.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct RunOutcome {
    /// The returned value as JSON text, or why there is none.
    pub result: Result<ReturnValue, ProgramError>,
    /// Console output in order, capped by [`Limits::output_bytes`].
    pub logs: Vec<LogEntry>,
    /// What the output cap cut, if anything.
    pub logs_truncated: Option<Truncation>,
    /// Most heap the isolate used at once, in bytes, as the engine counts it.
    pub heap_peak_bytes: usize,
    /// Tool calls that failed with nobody awaiting them, one sentence each (at most a few),
    /// as the model should read them.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub unawaited: Vec<String>,
    /// CPU time (user + system) the run used, as the kernel counted it for the isolate
    /// thread or the worker process: the host fills it in, never a worker's word.
    #[serde(skip)]
    pub cpu: Option<std::time::Duration>,
}

impl RunOutcome {
    /// An outcome with no value and no output: the run ended (or never started) with
    /// `error`.
    pub fn failed(error: ProgramError) -> Self {
        Self {
            result: Err(error),
            logs: Vec::new(),
            logs_truncated: None,
            heap_peak_bytes: 0,
            unawaited: Vec::new(),
            cpu: None,
        }
    }
}

/// The program's returned value.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ReturnValue {
    /// The value as JSON text; cut to [`Limits::result_bytes`] when `truncated` is set.
    pub json: String,
    /// Set when the JSON text was longer than the cap.
    pub truncated: Option<Truncation>,
}

impl ReturnValue {
    /// The value, parsed; `None` when the result cap cut its JSON text (then `json` holds
    /// the head of it, and `truncated` says how much there was).
    pub fn value(&self) -> Option<serde_json::Value> {
        if self.truncated.is_some() {
            return None;
        }
        serde_json::from_str(&self.json).ok()
    }
}

/// What a cap cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Truncation {
    /// Bytes the full text or output had.
    pub total_bytes: usize,
    /// Bytes kept.
    pub kept_bytes: usize,
    /// Log entries dropped entirely (0 for a result).
    pub dropped_entries: usize,
}

/// Why a program produced no value. Written for the model that wrote the program.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("{kind} error: {message}")]
pub struct ProgramError {
    /// What class of failure this is; decided from host-side facts, never from a message
    /// the program could forge.
    pub kind: ErrorKind,
    /// What went wrong.
    pub message: String,
    /// Where in the agent's source, when known.
    pub position: Option<Position>,
    /// The stack trimmed to the agent's own frames, positions mapped to its source.
    pub stack: Option<String>,
    /// The tool whose failure ended the program, as `namespace.tool` (kind `tool`).
    pub tool: Option<String>,
    /// JSON pointer into that tool's input schema, when its arguments were invalid.
    pub schema_path: Option<String>,
}

impl ProgramError {
    /// An error with no position.
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            message: message.into(),
            position: None,
            stack: None,
            tool: None,
            schema_path: None,
        }
    }
}

/// The class of a program failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum ErrorKind {
    /// The program does not parse.
    Syntax,
    /// The program threw, or its result could not be produced.
    Runtime,
    /// The wall-clock limit ended the run.
    Timeout,
    /// The heap cap ended the run.
    Memory,
    /// The returned value cannot be represented as JSON.
    Output,
    /// A tool call failed and the program did not catch its `ToolError`.
    Tool,
    /// Every execution slot and the queue were full; nothing ran.
    Busy,
    /// The client cancelled the request, or the server shut down.
    Cancelled,
    /// The worker process running the program died (an engine failure, a forbidden
    /// system call); only that run is lost.
    Crashed,
    /// The program made more tool calls or fetches than one execution may.
    Budget,
    /// The policy refused the program before it ran: it names a denied tool or a URL
    /// outside the egress rules, the user declined it, or executions nest too deep.
    Policy,
    /// The type check asked for found errors (or could not run); nothing ran.
    Type,
    /// The principal's quota (executions, CPU, tool calls or egress over a window, or
    /// executions at once) is used up: nothing ran, or the call past it was refused.
    Quota,
    /// Not a failure: nothing ran yet because the user is being asked to confirm the
    /// program's tools (a 2026-07-28 client, asked by an `input_required` result whose
    /// retry runs it). Only records show it; the client gets the question.
    #[serde(rename = "input_required")]
    InputRequired,
}

impl ErrorKind {
    /// The name used in messages and structured output.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Syntax => "syntax",
            Self::Runtime => "runtime",
            Self::Timeout => "timeout",
            Self::Memory => "memory",
            Self::Output => "output",
            Self::Tool => "tool",
            Self::Busy => "busy",
            Self::Cancelled => "cancelled",
            Self::Crashed => "crashed",
            Self::Budget => "budget",
            Self::Policy => "policy",
            Self::Type => "type",
            Self::Quota => "quota",
            Self::InputRequired => "input_required",
        }
    }
}

impl std::fmt::Display for ErrorKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why an isolate was stopped from outside; the program's error says which.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReason {
    /// The client cancelled the request (or went away).
    Client,
    /// The server is shutting down and its grace period ran out.
    Shutdown,
}

/// A handle the host keeps to stop a running isolate from outside (client cancellation,
/// server shutdown).
#[derive(Debug, Clone, Default)]
pub struct CancelHandle(std::sync::Arc<CancelState>);

#[derive(Debug, Default)]
struct CancelState {
    /// The run's wall clock: every deadline of the run reads it.
    clock: RunClock,
    reason: std::sync::atomic::AtomicU8,
    // Wakes an isolate that waits on the host (a timer, a tool call): the engine's
    // interrupt only runs while JS runs.
    wake: tokio::sync::Notify,
}

impl CancelHandle {
    /// A handle for a run whose wall clock is `clock` (which the host holds while the run
    /// waits for a person).
    pub fn with_clock(clock: RunClock) -> Self {
        Self(std::sync::Arc::new(CancelState {
            clock,
            ..CancelState::default()
        }))
    }

    /// The run's wall clock.
    pub fn clock(&self) -> &RunClock {
        &self.0.clock
    }

    /// Asks the isolate to stop: the client cancelled.
    pub fn cancel(&self) {
        self.cancel_for(CancelReason::Client);
    }

    /// Asks the isolate to stop. The first reason given wins.
    pub fn cancel_for(&self, reason: CancelReason) {
        let code = match reason {
            CancelReason::Client => 1,
            CancelReason::Shutdown => 2,
        };
        let _ = self.0.reason.compare_exchange(
            0,
            code,
            std::sync::atomic::Ordering::SeqCst,
            std::sync::atomic::Ordering::SeqCst,
        );
        self.0.wake.notify_waiters();
    }

    /// Why the isolate was asked to stop, if it was.
    pub fn reason(&self) -> Option<CancelReason> {
        match self.0.reason.load(std::sync::atomic::Ordering::SeqCst) {
            0 => None,
            1 => Some(CancelReason::Client),
            _ => Some(CancelReason::Shutdown),
        }
    }

    /// Whether the isolate was asked to stop.
    pub fn is_cancelled(&self) -> bool {
        self.reason().is_some()
    }

    /// Resolves once the isolate is asked to stop.
    pub async fn cancelled(&self) {
        loop {
            let woken = self.0.wake.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if self.is_cancelled() {
                return;
            }
            woken.await;
        }
    }
}

/// The message a program cancelled from outside ends with.
pub fn cancel_message(reason: CancelReason) -> &'static str {
    match reason {
        CancelReason::Client => "the execution was cancelled by the client",
        CancelReason::Shutdown => {
            "the server is shutting down and stopped this execution at the end of its grace period; nothing more will run. Run the program again once the server is back (or on another replica)"
        }
    }
}

/// `64 MiB`, `256 KiB`: sizes as people write limits.
pub fn human_bytes(bytes: usize) -> String {
    if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else if bytes >= 1 << 10 && bytes.is_multiple_of(1 << 10) {
        format!("{} KiB", bytes >> 10)
    } else {
        format!("{bytes} bytes")
    }
}
