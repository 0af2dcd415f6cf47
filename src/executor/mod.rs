//! One execution end to end: transpile, take an isolate slot, run, answer its tool calls,
//! collect the outcome.
//! The MCP server, the CLI `run` and the benchmark all go through [`Executor::execute`].
//!
//! Isolates are not `Send`, so each runs on one of a fixed set of isolate threads, each
//! with its own current-thread tokio runtime. The number of threads is the concurrency cap;
//! a bounded queue in front of them holds what waits; past that, `busy`.

mod calls;

use std::{
    panic::AssertUnwindSafe,
    sync::{
        Arc,
        atomic::{AtomicUsize, Ordering},
    },
    thread,
    time::{Duration, Instant},
};

use crossbeam_channel::{Receiver, Sender, TrySendError};
use tokio::sync::oneshot;
use tokio_util::sync::CancellationToken;

// The record types live below everything that reads them; here for the paths users know.
pub use crate::record::{CallRecord, Execution};
pub(crate) use calls::program_value;

use crate::{
    audit::{AuditLog, AuditRecord, Origin},
    catalog::{Catalog, LiveCatalog},
    egress::Egress,
    isolation::WorkerPool,
    oversight::{ExecutionTrace, Oversight},
    policy::{Access, ConfirmRequest, Confirmation, SharedConfirmer},
    preflight::{self, Reference, Scan},
    sandbox::{
        Binding, CancelHandle, CancelReason, Engine, ErrorKind, Limits, ProgramError, RunClock,
        RunOutcome, RunRequest, SPIN, ToolHost, cancel_message, spin_then_sleep,
    },
    transpile::{Position, line_count, transpile},
    typecheck::{self, CheckError, Checker},
    typegen,
};

/// How long past the deadline the host waits for an isolate thread before it answers
/// `timeout` itself: some native built-ins never poll the engine's interrupt.
const HOST_GRACE: Duration = Duration::from_secs(1);

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

/// What the caller of one execution asked for, as [`Executor::prepare`] needs it.
struct Asked<'a> {
    confirmer: &'a Option<SharedConfirmer>,
    depth: u32,
    typecheck: bool,
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
    /// The caller's data-flow mark, shared (a skill's run): untrusted data its caller read
    /// marks it, and what it reads marks its caller.
    pub taint: Option<crate::catalog::Taint>,
    /// The key of the `state.*` store the run sees; `None`: its origin's session.
    pub state_key: Option<String>,
    /// Set when the run (or a skill it calls) uses its `state.*` store; `None`: nobody
    /// asks.
    pub state_used: Option<Arc<std::sync::atomic::AtomicBool>>,
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
            .field("taint", &self.taint.is_some())
            .field("state_key", &self.state_key.is_some())
            .field("state_used", &self.state_used)
            .finish()
    }
}

struct Job {
    request: RunRequest,
    cancel: CancelHandle,
    host: Arc<dyn ToolHost>,
    started: oneshot::Sender<()>,
    reply: oneshot::Sender<RunOutcome>,
}

/// Runs programs in fresh isolates under the configured limits.
#[derive(Debug)]
pub struct Executor {
    settings: ExecutorSettings,
    runner: Runner,
    tools: Arc<LiveCatalog>,
    /// Set when the server begins shutting down: new executions are refused.
    closed: CancellationToken,
    /// Set when the shutdown grace period ends: running executions are stopped.
    stopped: CancellationToken,
    /// Programs abandoned past their time limit in a built-in that does not poll the
    /// interrupt, whose isolate threads (with `--isolation none`) are still running them.
    abandoned: Arc<AtomicUsize>,
    /// Slots of skills run within their callers (see [`RunOptions::within_caller`]), one
    /// set per nesting depth.
    nested_slots: std::sync::Mutex<std::collections::HashMap<u32, Arc<tokio::sync::Semaphore>>>,
    /// Where each execution is recorded, if anywhere.
    audit: Option<Arc<AuditLog>>,
    /// What programs' `fetch` may reach; none: they have no `fetch`.
    egress: Option<Arc<Egress>>,
    /// Metrics, anomaly flags and the recent executions.
    oversight: Arc<Oversight>,
    /// The type checker, and whether programs are checked when a call does not say.
    typecheck: (Option<Arc<Checker>>, bool),
}

impl Executor {
    /// Starts the isolate threads, with no tools.
    pub fn new(settings: ExecutorSettings) -> std::io::Result<Self> {
        Self::with_tools(settings, Arc::new(LiveCatalog::empty()))
    }

    /// Starts the isolate threads; programs call the tools of `tools`.
    pub fn with_tools(
        settings: ExecutorSettings,
        tools: Arc<LiveCatalog>,
    ) -> std::io::Result<Self> {
        let concurrency = settings.concurrency.max(1);
        let (jobs, queue) = crossbeam_channel::bounded::<Job>(settings.queue);
        for index in 0..concurrency {
            let queue = queue.clone();
            let (engine, spin) = (settings.engine, settings.spin);
            // Until the first program shows the catalog's shape, isolates are made for no
            // bindings; after it, for the bindings and limits of the last program.
            let template = (index < settings.warm_isolates).then(|| RunRequest {
                js: String::new(),
                program_lines: 1,
                bindings: Vec::new(),
                fetch: false,
                limits: settings.limits,
            });
            thread::Builder::new()
                .name(format!("codemode-isolate-{index}"))
                // QuickJS measures its stack limit from where the isolate starts; the thread
                // needs room well beyond it or deep recursion aborts the process.
                .stack_size(settings.limits.stack_bytes.saturating_mul(4).max(8 << 20))
                .spawn(move || isolate_thread(engine, spin, queue, template))?;
        }
        Ok(Self {
            settings,
            runner: Runner::Threads(jobs),
            tools,
            closed: CancellationToken::new(),
            stopped: CancellationToken::new(),
            abandoned: Arc::default(),
            nested_slots: Default::default(),
            audit: None,
            egress: None,
            oversight: Arc::default(),
            typecheck: (None, false),
        })
    }

    /// Runs programs in `pool`'s locked-down worker processes, at most
    /// `settings.concurrency` at once with `settings.queue` more waiting; programs call the
    /// tools of `tools`, answered here in the host.
    pub fn with_workers(
        settings: ExecutorSettings,
        tools: Arc<LiveCatalog>,
        pool: WorkerPool,
    ) -> Self {
        let concurrency = settings.concurrency.max(1);
        Self {
            settings,
            runner: Runner::Workers(Workers {
                pool,
                slots: Arc::new(tokio::sync::Semaphore::new(concurrency)),
                admitted: Arc::new(AtomicUsize::new(0)),
                capacity: concurrency + settings.queue,
            }),
            tools,
            closed: CancellationToken::new(),
            stopped: CancellationToken::new(),
            abandoned: Arc::default(),
            nested_slots: Default::default(),
            audit: None,
            egress: None,
            oversight: Arc::default(),
            typecheck: (None, false),
        }
    }

    /// Gives programs `fetch`, answered by `egress`.
    pub fn with_egress(mut self, egress: Option<Arc<Egress>>) -> Self {
        self.egress = egress;
        self
    }

    /// Type-checks programs with `checker` (when one is found) where a call asks, or
    /// always when `by_default` and the call does not say.
    pub fn with_typecheck(mut self, checker: Option<Checker>, by_default: bool) -> Self {
        self.typecheck = (checker.map(Arc::new), by_default);
        self
    }

    /// What programs' `fetch` may reach, if they have `fetch`.
    pub fn egress(&self) -> Option<&Arc<Egress>> {
        self.egress.as_ref()
    }

    /// Records every execution in `audit` from now on.
    pub fn with_audit(mut self, audit: Arc<AuditLog>) -> Self {
        self.audit = Some(audit);
        self
    }

    /// The audit log executions are recorded in, if any.
    pub fn audit(&self) -> Option<&Arc<AuditLog>> {
        self.audit.as_ref()
    }

    /// Hands every execution to `oversight` (metrics, anomaly flags, the console).
    pub fn with_oversight(mut self, oversight: Arc<Oversight>) -> Self {
        self.oversight = oversight;
        self
    }

    /// Metrics, anomaly flags and the recent executions.
    pub fn oversight(&self) -> &Arc<Oversight> {
        &self.oversight
    }

    /// Refuses every execution from now on (kind `busy`, saying the server is shutting
    /// down); running and queued ones go on.
    pub fn close(&self) {
        self.closed.cancel();
    }

    /// Refuses new executions and stops every running or queued one, which ends with kind
    /// `cancelled` and a message saying the server shut down.
    pub fn stop_all(&self) {
        self.closed.cancel();
        self.stopped.cancel();
    }

    /// The worker pool programs run in, with `--isolation process`.
    pub fn worker_pool(&self) -> Option<&WorkerPool> {
        match &self.runner {
            Runner::Workers(workers) => Some(&workers.pool),
            Runner::Threads(_) => None,
        }
    }

    /// The tools programs can call.
    pub fn tools(&self) -> &Arc<LiveCatalog> {
        &self.tools
    }

    /// The settings this executor runs with.
    pub fn settings(&self) -> &ExecutorSettings {
        &self.settings
    }

    /// Runs `code` (TypeScript or JavaScript, the body of an async function) in a fresh
    /// isolate. `timeout` may lower the configured wall clock, never raise it. Dropping the
    /// returned future cancels the run. Must be called within a tokio runtime, which serves
    /// the program's tool calls.
    pub async fn execute(&self, code: &str, timeout: Option<Duration>) -> Execution {
        self.execute_with(
            code,
            RunOptions {
                timeout,
                ..RunOptions::default()
            },
        )
        .await
    }

    /// [`Self::execute`] with options: a timeout, a channel that receives each tool call
    /// as it finishes, a token that cancels the run (it then ends with kind `cancelled`).
    pub async fn execute_with(&self, code: &str, options: RunOptions) -> Execution {
        let started = Instant::now();
        let _in_flight = self.oversight.began();
        let origin = options.origin.clone().unwrap_or_else(|| Origin {
            transport: "library".into(),
            ..Origin::default()
        });
        let trace = self
            .oversight
            .tracing()
            .map(|tracing| tracing.execution(options.traceparent.as_deref(), &origin));
        let catalog = self.tools.current();
        let clock = RunClock::default();
        let host = Arc::new(calls::CallHost::new(
            &self.tools,
            catalog.clone(),
            tokio::runtime::Handle::current(),
            calls::CallSettings {
                limits: self.settings.limits,
                progress: options.progress,
                confirmer: options.confirmer.clone(),
                clock: clock.clone(),
                egress: self.egress.clone(),
                depth: options.depth,
                trace: trace.clone(),
                // Over stdio (and in a library or `run`) the process serves one session.
                session: options.state_key.clone().unwrap_or_else(|| {
                    origin
                        .session
                        .clone()
                        .unwrap_or_else(|| origin.transport.clone())
                }),
                taint: options.taint.clone(),
                state_used: options.state_used.clone(),
            },
        ));
        let mut scan = None;
        let outcome = match self
            .prepare(
                code,
                &catalog,
                Asked {
                    confirmer: &options.confirmer,
                    depth: options.depth,
                    typecheck: options.typecheck.unwrap_or(self.typecheck.1),
                },
                &host,
                &mut scan,
            )
            .await
        {
            Err(refused) => RunOutcome::failed(refused),
            Ok(js) => {
                let run = self.outcome(
                    js,
                    code,
                    (options.wall_clock, options.timeout),
                    catalog.bindings(),
                    (host.clone(), clock),
                    options.within_caller.then_some(options.depth),
                );
                match options.cancel {
                    None => run.await,
                    Some(cancel) => tokio::select! {
                        outcome = run => outcome,
                        // Dropping the run stops its isolate and its tool calls.
                        () = cancel.cancelled() => RunOutcome::failed(ProgramError::new(
                            ErrorKind::Cancelled,
                            cancel_message(CancelReason::Client),
                        )),
                    },
                }
            }
        };
        let mut outcome = outcome;
        let calls = host.final_records();
        // Kind `tool` says that a call failed, and only the host's own records can say
        // that: a ToolError the program made itself (with the glue's functions, had it got
        // hold of them, or the constructor) naming a tool it never called is a runtime
        // error like any other the program throws.
        if let Err(error) = &mut outcome.result
            && error.kind == ErrorKind::Tool
            && !calls
                .iter()
                .any(|call| !call.ok && error.tool.as_deref() == Some(call.tool.as_str()))
        {
            error.kind = ErrorKind::Runtime;
            error.tool = None;
            error.schema_path = None;
        }
        // A run ended by a call the user did not confirm (declined, or nobody answered in
        // time) was stopped by the policy, not by the tool.
        if let Err(error) = &mut outcome.result
            && error.kind == ErrorKind::Tool
            && calls.iter().any(|call| {
                !call.ok
                    && call.decision == crate::record::Decision::NotConfirmed
                    && error.tool.as_deref() == Some(call.tool.as_str())
            })
        {
            error.kind = ErrorKind::Policy;
        }
        // A run ended by the error of a refused call (a ToolError, or fetch's TypeError)
        // ran out of budget, whatever the program did with the error's message.
        if let Err(error) = &mut outcome.result
            && matches!(error.kind, ErrorKind::Tool | ErrorKind::Runtime)
            && host.over_budget()
        {
            error.kind = ErrorKind::Budget;
        }
        let execution = Execution {
            outcome,
            calls,
            duration: started.elapsed(),
            scan,
        };
        self.record(&origin, code, &execution, trace).await;
        execution
    }

    /// Records a finished execution: its anomaly flags, its audit record (on disk before
    /// the answer goes out), its trace span, the metrics and the console's list.
    async fn record(
        &self,
        origin: &Origin,
        code: &str,
        execution: &Execution,
        trace: Option<ExecutionTrace>,
    ) {
        let mut record = AuditRecord::of(origin, code, execution);
        record.flags = self.oversight.flags(&record);
        let mut audited = false;
        if let Some(audit) = &self.audit {
            let (audit, flags) = (audit.clone(), record.flags.clone());
            let written = tokio::task::spawn_blocking(move || {
                let written = audit.append(&mut record);
                (record, written)
            })
            .await;
            match written {
                Ok((chained, Ok(()))) => {
                    record = chained;
                    audited = true;
                }
                Ok((mut unchained, Err(err))) => {
                    tracing::error!("the audit record was not written: {err}");
                    unchained.seq = 0;
                    record = unchained;
                }
                Err(err) => {
                    tracing::error!("the audit record was not written: {err}");
                    record = AuditRecord::of(origin, code, execution);
                    record.flags = flags;
                }
            }
        }
        if let Some(trace) = trace {
            trace.end(&record);
        }
        self.oversight.ended(execution, record, audited);
    }

    /// Transpiles and scans the program, and checks what it names against the policy
    /// and the egress rules; tools it names that need the user's word are confirmed here,
    /// in one question. The JavaScript to run, or why nothing runs.
    async fn prepare(
        &self,
        code: &str,
        catalog: &Catalog,
        asked: Asked<'_>,
        host: &calls::CallHost,
        scanned: &mut Option<Scan>,
    ) -> Result<String, ProgramError> {
        let Asked {
            confirmer,
            depth,
            typecheck,
        } = asked;
        let max_depth = self.tools.policy().max_depth();
        if depth > max_depth {
            return Err(ProgramError::new(
                ErrorKind::Policy,
                format!(
                    "nothing ran: this execution would nest {depth} deep (a program called a code-mode server whose program called this one), and codemode.policy.maxDepth allows {max_depth}. Do the work in the outer program instead of through another code-mode server"
                ),
            ));
        }
        let transpiled = transpile(code).map_err(|err| ProgramError {
            kind: ErrorKind::Syntax,
            message: err.message,
            position: err.position,
            stack: None,
            tool: None,
            schema_path: None,
        })?;
        if typecheck {
            self.typecheck(code, catalog).await?;
        }
        let scan = preflight::scan_with_globals(&transpiled.js, line_count(code), &|ns, tool| {
            catalog.find(ns, tool).is_some() || catalog.is_denied(ns, tool)
        });
        let refuse = |position: Position, message: String| {
            let mut error = ProgramError::new(ErrorKind::Policy, message);
            error.position = Some(position);
            error
        };
        *scanned = Some(scan.clone());
        for reference in &scan.tools {
            if let Some((namespace, tool)) = reference.name.split_once('.')
                && catalog.is_denied(namespace, tool)
            {
                let mut error = refuse(
                    reference.position,
                    format!(
                        "nothing ran: line {} calls tools.{}, which the policy (codemode.policy) denies. Do the task without it, or ask the user to allow it",
                        reference.position.line, reference.name
                    ),
                );
                error.tool = Some(reference.name.clone());
                return Err(error);
            }
        }
        for reference in &scan.urls {
            let why = match &self.egress {
                None => Some(
                    "fetch is off on this server (no codemode.egress.rules allow a URL)"
                        .to_string(),
                ),
                Some(egress) => egress.check(&reference.name).err(),
            };
            if let Some(why) = why {
                return Err(refuse(
                    reference.position,
                    format!(
                        "nothing ran: line {} fetches {:?}: {why}",
                        reference.position.line, reference.name
                    ),
                ));
            }
        }
        let to_confirm: Vec<&Reference> = scan
            .tools
            .iter()
            .filter(|r| {
                r.name.split_once('.').is_some_and(|(namespace, tool)| {
                    catalog
                        .find(namespace, tool)
                        .is_some_and(|t| t.access == Access::Confirm)
                })
            })
            .collect();
        if let (Some(confirmer), Some(first)) = (confirmer, to_confirm.first())
            && confirmer.can_ask()
        {
            let names: Vec<String> = to_confirm
                .iter()
                .map(|r| format!("tools.{}", r.name))
                .collect();
            let answer = confirmer
                .confirm(ConfirmRequest {
                    tool: names.join(", "),
                    arguments: String::new(),
                    site: Some(first.position),
                    reason: Some(
                        "the program calls these tools, which the policy asks you to confirm; approving allows them for this run of the program".into(),
                    ),
                    before_run: true,
                })
                .await;
            match answer {
                Confirmation::Once | Confirmation::ForExecution => {
                    host.approve(to_confirm.iter().map(|r| r.name.clone()));
                }
                Confirmation::Denied(why) => {
                    return Err(refuse(
                        first.position,
                        format!(
                            "nothing ran: the program calls {}, and {why}",
                            names.join(", ")
                        ),
                    ));
                }
                Confirmation::Deferred => {
                    let mut asking = ProgramError::new(
                        ErrorKind::InputRequired,
                        format!(
                            "nothing ran yet: the program calls {}, which the user is being asked to confirm",
                            names.join(", ")
                        ),
                    );
                    asking.position = Some(first.position);
                    return Err(asking);
                }
            }
        }
        Ok(transpiled.js)
    }

    /// Checks the program against the tools' declarations; its type errors, or a checker
    /// that could not run, refuse it.
    async fn typecheck(&self, code: &str, catalog: &Catalog) -> Result<(), ProgramError> {
        let checker =
            self.typecheck.0.as_ref().ok_or_else(|| {
                ProgramError::new(ErrorKind::Type, CheckError::Missing.to_string())
            })?;
        let declarations = typegen::all_declarations_as(catalog, typegen::Returns::Checked);
        match checker
            .check(code, &declarations, self.egress.is_some())
            .await
        {
            Ok(errors) if errors.is_empty() => Ok(()),
            Ok(errors) => {
                let mut error = ProgramError::new(ErrorKind::Type, typecheck::report(&errors));
                error.position = Some(errors[0].position);
                Err(error)
            }
            Err(err) => Err(ProgramError::new(
                ErrorKind::Type,
                format!("nothing ran: {err}"),
            )),
        }
    }

    async fn outcome(
        &self,
        js: String,
        code: &str,
        (wall_clock, timeout): (Option<Duration>, Option<Duration>),
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
        let mut limits = self.settings.limits;
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
                fetch: self.egress.is_some(),
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
        let clock = stop_on_drop.0.clock().clone();
        clock.start(limits.timeout);
        let backstop = async {
            clock.expiry().await;
            tokio::time::sleep(HOST_GRACE).await;
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
enum Refused {
    /// Every slot and queue place is taken.
    Full,
    /// The isolate threads are gone.
    Closed,
}

/// Where jobs go: isolate threads in this process, or worker processes.
#[derive(Debug)]
enum Runner {
    Threads(Sender<Job>),
    Workers(Workers),
}

/// Jobs for worker processes: a slot each, the same caps as the isolate threads.
#[derive(Debug)]
struct Workers {
    pool: WorkerPool,
    slots: Arc<tokio::sync::Semaphore>,
    /// Jobs running or waiting for a slot.
    admitted: Arc<AtomicUsize>,
    /// Slots plus queue places.
    capacity: usize,
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
            let _admitted = Admitted(admitted);
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

/// One admitted job; dropping it frees its place.
struct Admitted(Arc<AtomicUsize>);

impl Drop for Admitted {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::SeqCst);
    }
}

struct CancelOnDrop(CancelHandle);

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        self.0.cancel();
    }
}

/// Runs jobs one after another; with a `template`, the next job's isolate is made while
/// the thread waits for it (for the shape of the last job), so a program starts in an
/// isolate that is ready.
fn isolate_thread(
    engine: Engine,
    spin: Duration,
    queue: Receiver<Job>,
    mut template: Option<RunRequest>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(rt) => rt,
        Err(err) => {
            tracing::error!("isolate thread could not start its runtime: {err}");
            return;
        }
    };
    let prepare = |template: &Option<RunRequest>| {
        template
            .as_ref()
            .and_then(|t| runtime.block_on(engine.prepare(t)))
    };
    let mut warm = prepare(&template);
    while let Ok(job) = queue.recv() {
        if job.cancel.is_cancelled() || job.started.send(()).is_err() {
            continue;
        }
        let ran = std::panic::catch_unwind(AssertUnwindSafe(|| {
            // Tool replies come from other threads: spinning briefly spares each one a wake.
            runtime.block_on(spin_then_sleep(
                spin,
                engine.run_then_retire(warm.take(), &job.request, &job.cancel, job.host.clone()),
            ))
        }));
        let (outcome, retired) = match ran {
            Ok((outcome, retired)) => (outcome, Some(retired)),
            Err(_) => (
                RunOutcome::failed(ProgramError::new(
                    ErrorKind::Runtime,
                    "the engine failed while running this program (a bug in codemode-mcp); the server keeps serving",
                )),
                None,
            ),
        };
        let large = outcome.heap_peak_bytes > TRIM_AFTER_HEAP_BYTES;
        let _ = job.reply.send(outcome);
        // The answer is out; freeing the isolate no longer delays it.
        drop(retired);
        if large {
            return_freed_memory();
        }
        if let Some(template) = &mut template {
            template.bindings = job.request.bindings;
            template.fetch = job.request.fetch;
            template.limits = job.request.limits;
        }
        warm = prepare(&template);
    }
}

/// Heap peak past which the isolate thread hands freed memory back to the OS.
const TRIM_AFTER_HEAP_BYTES: usize = 8 << 20;

/// glibc keeps what a big isolate freed in that thread's arena; with one arena per isolate
/// thread the process would keep up to a heap cap per thread. Trimming returns it.
fn return_freed_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only releases free memory held by the allocator.
    unsafe {
        libc::malloc_trim(0);
    }
}
