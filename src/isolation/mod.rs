//! Worker processes: defense in depth around the engine. QuickJS is not a memory-safety
//! boundary, so with `--isolation process` every program runs in a worker process that
//! locked itself down before reading it ([`lockdown`]: rlimits, namespaces, Landlock,
//! seccomp), speaks only length-prefixed JSON over its pipes ([`protocol`]), holds no
//! secret (the host alone holds upstream clients and credentials, and answers its tool
//! calls) and runs one program by default. The host keeps a pool of them ready.

mod lockdown;
mod pool;
mod protocol;
mod worker;

pub use lockdown::{Layer, LockdownReport};
pub use pool::{PoolHealth, PoolSettings, WorkerPool};
pub use worker::{WORKER_COMMAND, worker_main};

/// Decodes one message as the host reads a worker's (for the fuzz target): whatever the
/// bytes, an error or a message, never a panic.
pub(crate) fn decode_worker_message(data: &[u8]) {
    let _ = serde_json::from_slice::<protocol::FromWorker>(data);
}

/// Where programs run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, clap::ValueEnum)]
pub enum Isolation {
    /// In a locked-down worker process per program (the default for `serve` and `run`).
    Process,
    /// In-process, on isolate threads: for embedding and benchmarks; an engine exploit
    /// would run with the server's rights.
    #[default]
    None,
}

/// Why workers could not be started.
#[derive(Debug, thiserror::Error)]
pub enum IsolationError {
    /// The worker process could not be spawned.
    #[error("could not start a worker process: {0}")]
    Spawn(std::io::Error),
    /// It started but never became ready.
    #[error(
        "a worker process failed before it was ready ({0}); its message, if any, is in the log above"
    )]
    WorkerFailed(String),
}
