//! One execution end to end, as stages: [`admit`] reads the program (transpile, type check,
//! scan) and admits it (the policy and egress rules on what it names, up-front
//! confirmations); [`schedule`] takes a slot and runs it in an isolate ([`threads`], or a
//! worker process), whose tool calls [`calls`] answers; [`recording`] writes the audit
//! record and tells oversight. [`Executor::execute_with`] is that pipeline.
//! The MCP server, the CLI `run` and the benchmark all go through [`Executor::execute`].
//!
//! Isolates are not `Send`, so each runs on one of a fixed set of isolate threads, each
//! with its own current-thread tokio runtime. The number of threads is the concurrency cap;
//! a bounded queue in front of them holds what waits; past that, `busy`.

mod admit;
mod calls;
mod options;
mod recording;
mod schedule;
mod threads;

use std::{
    sync::{Arc, atomic::AtomicUsize},
    thread,
    time::{Duration, Instant},
};

use tokio_util::sync::CancellationToken;

// The record types live below everything that reads them; here for the paths users know.
pub use crate::record::{CallRecord, Execution};
pub(crate) use calls::program_value;
pub use options::{ExecutorSettings, RunOptions};

use admit::Asked;
use schedule::{Job, Runner, Workers};
use threads::isolate_thread;

use crate::{
    audit::{AuditLog, Origin},
    catalog::LiveCatalog,
    egress::Egress,
    isolation::WorkerPool,
    oversight::Oversight,
    sandbox::{
        CancelReason, ErrorKind, ProgramError, RunClock, RunOutcome, RunRequest, cancel_message,
    },
    tenants::{Tenants, quota::Quotas},
    typecheck::Checker,
};

/// The optional type check of programs before they run.
#[derive(Debug, Default)]
struct TypeCheck {
    checker: Option<Arc<Checker>>,
    /// Whether a program is checked when its call does not say.
    by_default: bool,
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
    typecheck: TypeCheck,
    /// The overlays of `codemode.tenants`, for runs whose caller did not resolve them.
    tenants: Arc<Tenants>,
    /// Every principal's quota windows.
    quotas: Arc<Quotas>,
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
            typecheck: TypeCheck::default(),
            tenants: Arc::default(),
            quotas: Arc::default(),
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
            typecheck: TypeCheck::default(),
            tenants: Arc::default(),
            quotas: Arc::default(),
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
        self.typecheck = TypeCheck {
            checker: checker.map(Arc::new),
            by_default,
        };
        self
    }

    /// Narrows what each principal's programs may see, call, fetch and use by `tenants`.
    pub fn with_tenants(mut self, tenants: Arc<Tenants>) -> Self {
        self.tenants = tenants;
        self
    }

    /// The overlays of `codemode.tenants`.
    pub fn tenants(&self) -> &Arc<Tenants> {
        &self.tenants
    }

    /// Keeps every principal's quota windows in `quotas` (in memory unless given).
    pub fn with_quotas(mut self, quotas: Arc<Quotas>) -> Self {
        self.quotas = quotas;
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
        // Without a tenancy resolved by the caller (who knows the token's scopes), the
        // overlays that name the origin's principal apply.
        let tenancy = options
            .tenancy
            .clone()
            .unwrap_or_else(|| self.tenants.resolve(origin.principal.as_deref(), &[]));
        // Quotas are the principal's: a skill its program calls is charged to it, but
        // takes no slot and no execution of its own (its caller holds them).
        let quota_key = options
            .quota_key
            .clone()
            .or_else(|| origin.principal.clone())
            .unwrap_or_else(|| "-".to_string());
        let shown = origin.principal.as_deref().unwrap_or("this client");
        let metered = !tenancy.quotas().is_empty();
        let admission = match metered && !options.within_caller {
            false => None,
            true => match self.quotas.admit(&quota_key, shown, tenancy.quotas()) {
                Ok(admission) => Some(admission),
                Err(refusal) => {
                    self.oversight
                        .metrics()
                        .quota_refused(origin.principal.as_deref(), refusal.quota.key());
                    let mut execution =
                        Execution::refused(ProgramError::new(ErrorKind::Quota, refusal.message));
                    execution.duration = started.elapsed();
                    self.record(&origin, code, &execution, trace).await;
                    return execution;
                }
            },
        };
        let catalog = self.tools.current_for(&tenancy);
        let limits = tenancy.limits(self.settings.limits);
        let clock = RunClock::with_max_hold(options.max_hold.unwrap_or(Duration::ZERO));
        let host = Arc::new(calls::CallHost::new(
            &self.tools,
            catalog.clone(),
            tokio::runtime::Handle::current(),
            calls::CallSettings {
                limits,
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
                principal: origin.principal.clone(),
                taint: options.taint.clone(),
                state_used: options.state_used.clone(),
                tenancy: tenancy.clone(),
                meter: admission
                    .as_ref()
                    .map(|a| a.meter().clone())
                    .or_else(|| options.meter.clone()),
                quota_key: Some(quota_key.clone()),
            },
        ));
        let asked = Asked {
            confirmer: &options.confirmer,
            depth: options.depth,
            typecheck: options.typecheck.unwrap_or(self.typecheck.by_default),
            tenancy: &tenancy,
        };
        let (admitted, scan) = match self.read(code, &catalog, &asked).await {
            Err(refused) => (Err(refused), None),
            Ok((js, scan)) => {
                let admitted = self.admit(&scan, &catalog, &asked, &host).await;
                (admitted.map(|()| js), Some(scan))
            }
        };
        let outcome = match admitted {
            Err(refused) => RunOutcome::failed(refused),
            Ok(js) => {
                let run = self.run_in_isolate(
                    js,
                    code,
                    schedule::Allowance {
                        limits,
                        wall_clock: options
                            .wall_clock
                            .map(|clock| tenancy.timeout().map_or(clock, |t| clock.min(t))),
                        timeout: options.timeout,
                        fetch: self.egress.is_some() && tenancy.may_fetch(),
                    },
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
        // A run ended by the error of a call a quota refused ran out of quota, whatever the
        // program did with the error's message.
        let over_quota = host.over_quota();
        if let Some(quota) = over_quota {
            self.oversight
                .metrics()
                .quota_refused(origin.principal.as_deref(), quota.key());
        }
        if let Err(error) = &mut outcome.result
            && matches!(error.kind, ErrorKind::Tool | ErrorKind::Runtime)
            && over_quota.is_some()
        {
            error.kind = ErrorKind::Quota;
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
        if let Some(admission) = &admission
            && matches!(&execution.outcome.result, Err(e) if e.kind == ErrorKind::InputRequired)
        {
            admission.refund();
        }
        if metered {
            self.quotas
                .charge_cpu(&quota_key, tenancy.quotas(), execution.cost().cpu());
        }
        drop(admission);
        self.record(&origin, code, &execution, trace).await;
        execution
    }
}
