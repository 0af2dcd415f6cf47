//! What an executor is set up with ([`ExecutorSettings`]) and what one execution asks for
//! beyond its code ([`RunOptions`]).

use std::{sync::Arc, thread, time::Duration};

use tokio_util::sync::CancellationToken;

use super::CallRecord;
use crate::{
    audit::Origin,
    policy::SharedConfirmer,
    sandbox::{Engine, Limits, SPIN},
};

/// Settings of an [`Executor`].
#[derive(Debug, Clone, Copy)]
pub struct ExecutorSettings {
    /// The engine isolates run on.
    pub engine: Engine,
    /// Limits of every execution; a request may lower the timeout, never raise it.
    pub limits: Limits,
    /// Executions that run at once (isolate threads).
    pub concurrency: usize,
    /// Executions that may wait for a slot; past that, `busy`.
    pub queue: usize,
    /// Isolate threads that make their next isolate ahead of its program (at most all of
    /// them; 0: none).
    pub warm_isolates: usize,
    /// How long a program waiting on the host keeps its thread polling before it sleeps.
    pub spin: Duration,
}

impl Default for ExecutorSettings {
    fn default() -> Self {
        let cores = thread::available_parallelism().map_or(1, usize::from);
        Self {
            engine: Engine::default(),
            limits: Limits::default(),
            concurrency: 2 * cores,
            queue: 16 * cores,
            warm_isolates: usize::MAX,
            spin: SPIN,
        }
    }
}

/// How one execution runs, beyond its code.
#[derive(Default)]
pub struct RunOptions {
    /// Lowers the wall clock for this run (never raises it).
    pub timeout: Option<Duration>,
    /// Replaces the configured wall clock for this run: a task's, which is longer. The
    /// engine limits (heap, stack, caps) stay the configured ones.
    pub wall_clock: Option<Duration>,
    /// Receives each tool call of the run as it finishes.
    pub progress: Option<tokio::sync::mpsc::UnboundedSender<CallRecord>>,
    /// Cancels the run.
    pub cancel: Option<CancellationToken>,
    /// Who asked, for the audit log.
    pub origin: Option<Origin>,
    /// Asks the user about calls the policy wants confirmed; without one they are refused.
    pub confirmer: Option<SharedConfirmer>,
    /// How deep this execution nests: 0 for an agent's own, n + 1 for one a program at
    /// depth n started through a code-mode upstream (read from the request's `_meta`).
    pub depth: u32,
    /// The caller's W3C `traceparent`: the execution's span joins that trace.
    pub traceparent: Option<String>,
    /// Type-check the program before it runs; `None`: the server's default.
    pub typecheck: Option<bool>,
    /// A saved skill called by a running program: it never waits for an execution slot,
    /// since callers holding every slot while they wait for their skills would wait for
    /// ever. Skills at one nesting depth have slots of their own instead (as many as the
    /// server's), so nesting cannot starve and a program calling a skill in a loop cannot
    /// start more isolates at once than that.
    pub within_caller: bool,
    /// How long in all the run's clock may stand still while the user is asked about its
    /// calls (the approval timeout); `None`: it never stands still.
    pub max_hold: Option<Duration>,
    /// The caller's data-flow mark, shared (a skill's run): untrusted data its caller read
    /// marks it, and what it reads marks its caller.
    pub taint: Option<crate::catalog::Taint>,
    /// The key of the `state.*` store the run sees; `None`: its origin's session.
    pub state_key: Option<String>,
    /// Set when the run (or a skill it calls) uses its `state.*` store; `None`: nobody
    /// asks.
    pub state_used: Option<Arc<std::sync::atomic::AtomicBool>>,
    /// What the overlays of the principal asking allow it (`codemode.tenants`); `None`:
    /// those that match the origin's principal by name.
    pub tenancy: Option<Arc<crate::tenants::Tenancy>>,
    /// What the principal's quota windows are kept under (its id); `None`: the origin's
    /// principal name.
    pub quota_key: Option<String>,
    /// The meter of the execution that called this one (a skill's run): its calls and
    /// fetches draw on the caller's daily quotas.
    pub meter: Option<Arc<crate::tenants::quota::Meter>>,
}

impl std::fmt::Debug for RunOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RunOptions")
            .field("timeout", &self.timeout)
            .field("wall_clock", &self.wall_clock)
            .field("progress", &self.progress.is_some())
            .field("cancel", &self.cancel.is_some())
            .field("origin", &self.origin)
            .field("confirmer", &self.confirmer.is_some())
            .field("depth", &self.depth)
            .field("traceparent", &self.traceparent)
            .field("typecheck", &self.typecheck)
            .field("within_caller", &self.within_caller)
            .field("max_hold", &self.max_hold)
            .field("taint", &self.taint.is_some())
            .field("state_key", &self.state_key.is_some())
            .field("state_used", &self.state_used)
            .field("tenancy", &self.tenancy)
            .field("quota_key", &self.quota_key)
            .field("meter", &self.meter.is_some())
            .finish()
    }
}
