//! The host side of `tools.<ns>.<tool>(args)`: find the tool, validate the arguments
//! against its schema, call its upstream on the server's runtime, map the result to a
//! program value, and record the call.

use std::{
    collections::{HashMap, HashSet},
    future::Future,
    pin::Pin,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering},
    },
    task::{Context, Poll},
    time::Instant,
};

use rmcp::model::{CallToolResult, ContentBlock};
use serde_json::Value;
use tokio::{runtime::Handle, sync::mpsc, task::JoinHandle};

use futures::future::BoxFuture;

use crate::{
    catalog::{BuiltinHandler, Builtins, Catalog, LiveCatalog},
    egress::{Egress, FetchRequest},
    oversight::{CallSpan, ExecutionTrace},
    policy::{
        Access, ConfirmRequest, Confirmation, DataFlowMode, FETCH, Flow, SharedConfirmer,
        gate::{self, Approval, Verdict},
    },
    record::{CallRecord, Decision},
    sandbox::{
        Limits, ReplyFuture, RunClock, ToolCall, ToolFailure, ToolHost, ToolReply, human_bytes,
    },
    transpile::Position,
    upstream::{Upstream, Upstreams},
};

/// Characters of a refusal the glue reports that are kept (the name in it is the
/// program's, of any length).
const REFUSAL_CHARS: usize = 1_000;

/// Characters of a failed call's message a record keeps.
const RECORD_ERROR_CHARS: usize = 500;

fn record_error(message: &str) -> String {
    if message.chars().count() <= RECORD_ERROR_CHARS {
        return message.to_string();
    }
    let head: String = message.chars().take(RECORD_ERROR_CHARS).collect();
    format!("{head} [...]")
}

/// Characters of a name the program made up (an unknown tool) that a record keeps; longer
/// than any real tool's.
const NAME_CHARS: usize = 512;

/// Answers the tool calls and fetches of one execution.
pub(super) struct CallHost {
    /// The execution's tool-call, fetch and result-size budgets.
    limits: Limits,
    made: AtomicU32,
    made_per_tool: Mutex<HashMap<String, u32>>,
    fetched: AtomicU32,
    received: Arc<AtomicUsize>,
    /// Set once a call was refused for a budget.
    over_budget: Arc<AtomicBool>,
    catalog: Arc<Catalog>,
    upstreams: Arc<Upstreams>,
    builtins: Arc<Builtins>,
    runtime: Handle,
    recorder: Recorder,
    /// Asks the user about calls the policy wants confirmed; none: they are refused.
    confirmer: Option<SharedConfirmer>,
    /// The run's wall clock, held while the user is asked.
    clock: RunClock,
    /// Tools the user approved for the rest of this execution (keys from [`approval_key`]).
    approved: Arc<Mutex<HashSet<String>>>,
    /// What `fetch` may reach; none: programs have no `fetch`.
    egress: Option<Arc<Egress>>,
    /// What the data-flow guard does once untrusted data was read.
    data_flow: DataFlowMode,
    fetch_flow: Flow,
    /// The untrusted source this execution has read from, once it has.
    tainted: crate::catalog::Taint,
    /// This execution's nesting depth, passed on to upstreams.
    depth: u32,
    /// The MCP session of the execution (see [`CallSettings::session`]).
    session: String,
    /// See [`crate::catalog::Caller::state_used`].
    state_used: Arc<AtomicBool>,
}

/// What an execution's calls are answered with, beyond the catalog.
pub(super) struct CallSettings {
    pub(super) limits: Limits,
    pub(super) progress: Option<mpsc::UnboundedSender<CallRecord>>,
    pub(super) confirmer: Option<SharedConfirmer>,
    /// The run's wall clock, which stands still while the user is asked.
    pub(super) clock: RunClock,
    pub(super) egress: Option<Arc<Egress>>,
    pub(super) depth: u32,
    pub(super) trace: Option<ExecutionTrace>,
    /// The MCP session the execution belongs to, for the built-in tools that keep
    /// per-session data (`tools.state`).
    pub(super) session: String,
    /// The data-flow mark of the execution that called this one (a skill's caller), to
    /// share; `None`: a fresh one.
    pub(super) taint: Option<crate::catalog::Taint>,
    /// Whom to tell that the execution used its `state.*` store; `None`: nobody asks.
    pub(super) state_used: Option<Arc<AtomicBool>>,
}

/// A call (or fetch) about to go out, as the gate sees it.
struct Pending<'a> {
    /// `namespace.tool`, or `fetch`: the key of approvals.
    name: &'a str,
    /// How messages name it: `tools.ns.tool`, `fetch GET url`.
    shown_as: &'a str,
    /// Its arguments, shown to the user.
    arguments: &'a str,
    /// The program's line that makes it.
    site: Option<Position>,
    /// Whether the tool's own rule asks for confirmation.
    needs_rule: bool,
    flow: Flow,
    /// The rule that would allow it, for the refusal message.
    allow_rule: Option<String>,
}

/// What must happen before a call goes out.
struct Gate {
    confirmation: Option<(BoxFuture<'static, Confirmation>, Vec<Approval>)>,
    decision: Decision,
}

impl CallHost {
    /// A host with the default limits and nobody to ask, for the stages' unit tests.
    #[cfg(test)]
    pub(super) fn for_tests(tools: &LiveCatalog, catalog: Arc<Catalog>) -> Self {
        Self::new(
            tools,
            catalog,
            Handle::current(),
            CallSettings {
                limits: Limits::default(),
                progress: None,
                confirmer: None,
                clock: RunClock::default(),
                egress: None,
                depth: 0,
                trace: None,
                session: "-".into(),
                taint: None,
                state_used: None,
            },
        )
    }

    pub(super) fn new(
        tools: &LiveCatalog,
        catalog: Arc<Catalog>,
        runtime: Handle,
        settings: CallSettings,
    ) -> Self {
        let policy = tools.policy();
        Self {
            limits: settings.limits,
            made_per_tool: Mutex::default(),
            fetched: AtomicU32::new(0),
            received: Arc::default(),
            over_budget: Arc::default(),
            confirmer: settings.confirmer,
            clock: settings.clock,
            approved: Arc::default(),
            made: AtomicU32::new(0),
            catalog,
            upstreams: tools.upstreams().clone(),
            builtins: tools.builtins().clone(),
            runtime,
            recorder: Recorder {
                records: Arc::default(),
                // Every call the budgets allow, and then some: past it, calls (refused ones:
                // nothing else gets that far) are counted, not listed one by one.
                max_records: (settings.limits.tool_calls as usize)
                    .saturating_add(settings.limits.fetches as usize)
                    .saturating_add(64),
                unlisted: Arc::default(),
                in_flight: Arc::default(),
                progress: settings.progress,
                trace: settings.trace,
            },
            egress: settings.egress,
            data_flow: policy.data_flow(),
            fetch_flow: policy.fetch_flow(),
            tainted: settings.taint.unwrap_or_default(),
            depth: settings.depth,
            session: settings.session,
            state_used: settings.state_used.unwrap_or_default(),
        }
    }

    /// Whether a call was refused for a budget.
    pub(super) fn over_budget(&self) -> bool {
        self.over_budget.load(Ordering::SeqCst)
    }

    /// The calls made so far, in the order they finished.
    pub(super) fn records(&self) -> Vec<CallRecord> {
        self.recorder
            .records
            .lock()
            .map(|r| r.clone())
            .unwrap_or_default()
    }

    /// Every call of the run, once its program has ended: the finished ones, then those
    /// still in flight, which went out and may have done what they do, so they are
    /// recorded now (as not answered) and never again when their answer comes.
    pub(super) fn final_records(&self) -> Vec<CallRecord> {
        let abandoned: Vec<InFlightCall> = self
            .recorder
            .in_flight
            .lock()
            .map(|mut in_flight| {
                in_flight.closed = true;
                std::mem::take(&mut in_flight.calls).into_values().collect()
            })
            .unwrap_or_default();
        let mut abandoned = abandoned;
        abandoned.sort_by_key(|call| call.started);
        for call in abandoned {
            let reply = fail(
                "still in flight when the program ended: the call went out, and its answer was not awaited (await every call, or use Promise.all, before returning)".into(),
                None,
            );
            self.recorder.record(
                &call.name,
                call.target,
                call.started,
                call.args_bytes,
                Decision::Abandoned,
                &reply,
                None,
            );
        }
        let mut records = self.records();
        let unlisted = self.recorder.unlisted.load(Ordering::SeqCst);
        if unlisted > 0 {
            records.push(CallRecord {
                tool: "(more calls)".into(),
                target: None,
                ms: 0,
                ok: false,
                error: Some(format!(
                    "{unlisted} more calls were made past the budgets and refused; they are counted here, not listed one by one"
                )),
                args_bytes: 0,
                result_bytes: 0,
                decision: Decision::NotListed,
            });
        }
        records
    }

    /// Approves `names` for the rest of the execution (the pre-flight confirmation).
    pub(super) fn approve(&self, names: impl IntoIterator<Item = String>) {
        if let Ok(mut approved) = self.approved.lock() {
            approved.extend(names.into_iter().map(|name| Approval::UpFront.key(&name)));
        }
    }

    /// Asks the policy's gate about a call: it goes out now, or after the user's word, or
    /// not at all (then the decision for the record and the refusal message).
    fn gate(&self, call: Pending<'_>) -> Result<Gate, (Decision, String)> {
        let Pending {
            name,
            shown_as,
            arguments,
            site,
            needs_rule,
            flow,
            allow_rule,
        } = call;
        // A poisoned mark still marks: a panic elsewhere must not let a sink call through.
        let tainted_by = self
            .tainted
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .clone();
        let approved = self.approved.lock().map(|a| a.clone()).unwrap_or_default();
        let verdict = gate::decide(
            &gate::Call {
                name,
                shown_as,
                needs_rule,
                sink: flow.sink,
                allow_rule,
            },
            &gate::Run {
                approved: &approved,
                tainted_by: tainted_by.as_deref(),
                data_flow: self.data_flow,
                can_ask: self.confirmer.is_some(),
            },
        );
        let (approvals, reason) = match verdict {
            Verdict::Go(decision) => {
                return Ok(Gate {
                    confirmation: None,
                    decision,
                });
            }
            Verdict::Refuse(decision, message) => return Err((decision, message)),
            Verdict::Ask { approvals, reason } => (approvals, reason),
        };
        let Some(confirmer) = &self.confirmer else {
            return Err((
                Decision::NobodyToConfirm,
                format!("{shown_as} was not called: nobody can be asked here"),
            ));
        };
        let request = ConfirmRequest {
            tool: shown_as.to_string(),
            arguments: arguments.to_string(),
            site,
            reason,
            before_run: false,
        };
        Ok(Gate {
            confirmation: Some((
                held_while(&self.clock, confirmer.confirm(request)),
                approvals,
            )),
            decision: Decision::Allowed,
        })
    }

    /// What a call that passed the gate still has to do once answered.
    fn settlement(
        &self,
        name: String,
        target: Option<String>,
        shown_as: String,
        started: Instant,
        args_bytes: usize,
        is_source: bool,
    ) -> Settlement {
        let id = self.recorder.begin(InFlightCall {
            name: name.clone(),
            target: target.clone(),
            started,
            args_bytes,
        });
        Settlement {
            id,
            recorder: self.recorder.clone(),
            approved: self.approved.clone(),
            tainted: self.tainted.clone(),
            received: self.received.clone(),
            received_budget: self.limits.received_bytes,
            over_budget: self.over_budget.clone(),
            is_source,
            name,
            target,
            shown_as,
            started,
            args_bytes,
            span: Mutex::new(None),
        }
    }

    /// Refuses a call for a budget.
    fn refuse_budget(
        &self,
        name: &str,
        target: Option<String>,
        started: Instant,
        args_bytes: usize,
        message: String,
    ) -> ReplyFuture {
        self.over_budget.store(true, Ordering::SeqCst);
        let reply = fail(message, None);
        self.recorder.record(
            name,
            target,
            started,
            args_bytes,
            Decision::Budget,
            &reply,
            None,
        );
        Box::pin(std::future::ready(reply))
    }
}

/// A call that went out and is not answered yet.
struct InFlightCall {
    name: String,
    target: Option<String>,
    started: Instant,
    args_bytes: usize,
}

/// The calls of a run not answered yet. Once `closed` (the program ended), they have been
/// recorded as abandoned, and an answer that comes later is not recorded again.
#[derive(Default)]
struct InFlight {
    next: u64,
    calls: HashMap<u64, InFlightCall>,
    closed: bool,
}

/// Keeps each finished call, and reports it to whoever follows the execution's progress.
#[derive(Clone)]
struct Recorder {
    records: Arc<Mutex<Vec<CallRecord>>>,
    /// Records kept, at most.
    max_records: usize,
    /// Calls past `max_records`, counted only.
    unlisted: Arc<AtomicUsize>,
    in_flight: Arc<Mutex<InFlight>>,
    progress: Option<mpsc::UnboundedSender<CallRecord>>,
    /// The execution's span, when traces are on.
    trace: Option<ExecutionTrace>,
}

impl Recorder {
    /// Notes a call that passed the gate; its id ends it with [`Recorder::settle`].
    fn begin(&self, call: InFlightCall) -> u64 {
        self.in_flight.lock().map_or(u64::MAX, |mut in_flight| {
            in_flight.next += 1;
            let id = in_flight.next;
            if !in_flight.closed {
                in_flight.calls.insert(id, call);
            }
            id
        })
    }

    /// Records the answered call `id`, unless the run already recorded it as abandoned.
    #[allow(clippy::too_many_arguments)]
    fn settle(
        &self,
        id: u64,
        tool: &str,
        target: Option<String>,
        started: Instant,
        args_bytes: usize,
        decision: Decision,
        reply: &ToolReply,
        span: Option<CallSpan>,
    ) {
        // Recorded while the in-flight list is held: the run's end either finds the call
        // recorded or takes it as abandoned, never neither.
        let mut in_flight = self.in_flight.lock().unwrap_or_else(|e| e.into_inner());
        if in_flight.calls.remove(&id).is_some() || !in_flight.closed {
            self.record(tool, target, started, args_bytes, decision, reply, span);
        }
        drop(in_flight);
    }

    /// Adds a record (of a call refused at once, or through [`Recorder::settle`]); `span`
    /// is its live span, if it went out while traces are on (a call refused at once gets a
    /// span here).
    #[allow(clippy::too_many_arguments)]
    fn record(
        &self,
        tool: &str,
        target: Option<String>,
        started: Instant,
        args_bytes: usize,
        decision: Decision,
        reply: &ToolReply,
        span: Option<CallSpan>,
    ) {
        let (ok, error, result_bytes) = match reply {
            ToolReply::Ok(json) => (true, None, json.len()),
            // A message may quote the arguments (a schema error shows the value): the record
            // keeps its head, so a thousand calls with big arguments stay a small list.
            ToolReply::Err(failure) => (false, Some(record_error(&failure.message)), 0),
        };
        let record = CallRecord {
            tool: tool.to_string(),
            target,
            ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            ok,
            error,
            args_bytes,
            result_bytes,
            decision,
        };
        match (span, &self.trace) {
            (Some(span), _) => span.end(&record),
            (None, Some(trace)) => trace.refused_call(&record, started),
            (None, None) => {}
        }
        if let Some(progress) = &self.progress {
            let _ = progress.send(record.clone());
        }
        if let Ok(mut records) = self.records.lock() {
            if records.len() < self.max_records {
                records.push(record);
            } else {
                self.unlisted.fetch_add(1, Ordering::SeqCst);
            }
        }
    }
}

fn fail(message: String, schema_path: Option<String>) -> ToolReply {
    ToolReply::Err(ToolFailure {
        message,
        schema_path,
    })
}

/// `asked`, with the run's clock standing still while it is awaited: the user's time to
/// answer is the approval timeout's, not the program's.
fn held_while(
    clock: &RunClock,
    asked: BoxFuture<'static, Confirmation>,
) -> BoxFuture<'static, Confirmation> {
    let clock = clock.clone();
    Box::pin(async move {
        let _held = clock.hold();
        asked.await
    })
}

/// What a call (or fetch) that left the gate still has to do once it is answered: wait for
/// the user's word, count its result against the byte budget, mark the execution if it read
/// an untrusted source, and record itself. Owned, so it moves into the call's task.
struct Settlement {
    /// Its entry among the run's calls in flight.
    id: u64,
    recorder: Recorder,
    approved: Arc<Mutex<HashSet<String>>>,
    tainted: crate::catalog::Taint,
    received: Arc<AtomicUsize>,
    received_budget: usize,
    over_budget: Arc<AtomicBool>,
    /// Whether its result is untrusted (the data-flow guard).
    is_source: bool,
    /// `namespace.tool`, or `fetch`: the record's name and the key of approvals.
    name: String,
    /// For a fetch: `METHOD URL`.
    target: Option<String>,
    shown_as: String,
    started: Instant,
    args_bytes: usize,
    /// The call's live span, ended when it is recorded.
    span: Mutex<Option<CallSpan>>,
}

impl Settlement {
    /// Waits for the user's word on a gated call: the decision, or the refusal (recorded).
    async fn confirm(&self, gate: Gate) -> Result<Decision, ToolReply> {
        let Some((confirmation, approvals)) = gate.confirmation else {
            return Ok(gate.decision);
        };
        match confirmation.await {
            Confirmation::Once => Ok(Decision::ConfirmedByUser),
            Confirmation::ForExecution => {
                if let Ok(mut approved) = self.approved.lock() {
                    approved.extend(approvals.into_iter().map(|a| a.key(&self.name)));
                }
                Ok(Decision::ConfirmedForExecution)
            }
            denied @ (Confirmation::Denied(_) | Confirmation::Deferred) => {
                let why = match denied {
                    Confirmation::Denied(why) => why,
                    _ => "the confirmation cannot wait for a later request in the middle of a run"
                        .into(),
                };
                let reply = fail(format!("{} was not called: {why}", self.shown_as), None);
                self.record(Decision::NotConfirmed, &reply);
                Err(reply)
            }
        }
    }

    /// Counts the result against the execution's byte budget (past it, the result is
    /// withheld), marks the execution if the result is untrusted, records the call.
    fn finish(self, reply: ToolReply, decision: Decision) -> ToolReply {
        let (reply, decision) = match reply {
            ToolReply::Ok(json) => {
                let total = self.received.fetch_add(json.len(), Ordering::SeqCst) + json.len();
                if total > self.received_budget {
                    self.over_budget.store(true, Ordering::SeqCst);
                    let withheld = fail(
                        format!(
                            "{}: its result was withheld: this execution has received {} of tool results, more than the most one may ({}, --max-received-kib). Ask tools for less (filters, pages, fields)",
                            self.shown_as,
                            human_bytes(total),
                            human_bytes(self.received_budget)
                        ),
                        None,
                    );
                    (withheld, Decision::ResultWithheld)
                } else {
                    (ToolReply::Ok(json), decision)
                }
            }
            failed => (failed, decision),
        };
        // A source's error text is as untrusted as its result (an upstream's `isError`
        // message, the `Location` of a refused redirect): only a result the host itself
        // withheld carries nothing from outside.
        let from_outside = decision != Decision::ResultWithheld;
        if self.is_source && from_outside {
            let mut tainted = self.tainted.lock().unwrap_or_else(|e| e.into_inner());
            // The first untrusted source is the one named.
            tainted.get_or_insert_with(|| self.shown_as.clone());
        }
        self.record(decision, &reply);
        reply
    }

    fn record(&self, decision: Decision, reply: &ToolReply) {
        let span = self.span.lock().ok().and_then(|mut span| span.take());
        self.recorder.settle(
            self.id,
            &self.name,
            self.target.clone(),
            self.started,
            self.args_bytes,
            decision,
            reply,
            span,
        );
    }

    /// Starts the call's span, when traces are on; its `traceparent` goes to upstreams.
    fn start_span(&self) -> Option<String> {
        let span = self
            .recorder
            .trace
            .as_ref()?
            .call(&self.name, self.target.as_deref());
        let traceparent = span.traceparent();
        if let Ok(mut slot) = self.span.lock() {
            *slot = Some(span);
        }
        Some(traceparent)
    }
}

impl ToolHost for CallHost {
    fn unsent(&self, call: ToolCall, fetch: bool) {
        let name: String = if fetch {
            FETCH.to_string()
        } else if call.tool.is_empty() {
            call.namespace.chars().take(NAME_CHARS).collect()
        } else {
            format!("{}.{}", call.namespace, call.tool)
                .chars()
                .take(NAME_CHARS)
                .collect()
        };
        let reply = fail(
            "not sent: the program ended before the call left the sandbox, so it was never made (await every call before returning)".into(),
            None,
        );
        self.recorder.record(
            &name,
            None,
            Instant::now(),
            call.arguments.len(),
            Decision::NotSent,
            &reply,
            None,
        );
    }

    fn call_tool(&self, call: ToolCall) -> ReplyFuture {
        let started = Instant::now();
        // A made-up name is the program's, of any length: records keep its head.
        let qualified: String = format!("{}.{}", call.namespace, call.tool)
            .chars()
            .take(NAME_CHARS)
            .collect();
        let shown_as = format!("tools.{qualified}");
        let args_bytes = call.arguments.len();
        let immediate = |decision: Decision, reply: ToolReply| -> ReplyFuture {
            self.recorder.record(
                &qualified, None, started, args_bytes, decision, &reply, None,
            );
            Box::pin(std::future::ready(reply))
        };
        let budget = |why: String| {
            self.refuse_budget(
                &qualified,
                None,
                started,
                args_bytes,
                format!(
                    "{shown_as} was not called: {why}. Do fewer calls per execution (a tool that takes many items at once, or split the task over several executions)"
                ),
            )
        };
        // The glue refused the call itself (arguments that are not one JSON object, a name
        // that does not exist) and says so, so that the refusal is the host's own record.
        // It counts against the call budget: a program throwing such errors in a loop
        // cannot grow the record without bound.
        if let Some(message) = call.arguments.strip_prefix('\u{0}') {
            let message: String = message.chars().take(REFUSAL_CHARS).collect();
            // The names are the program's, of any length: a record keeps their head.
            let name: String = if call.tool.is_empty() {
                call.namespace.chars().take(NAME_CHARS).collect()
            } else {
                qualified.chars().take(NAME_CHARS).collect()
            };
            if self.made.fetch_add(1, Ordering::SeqCst) >= self.limits.tool_calls {
                return budget(format!(
                    "this execution has made its {} tool calls, the most one may (--max-tool-calls)",
                    self.limits.tool_calls
                ));
            }
            let reply = fail(message, None);
            self.recorder
                .record(&name, None, started, 0, Decision::InvalidCall, &reply, None);
            return Box::pin(std::future::ready(reply));
        }
        if self.made.fetch_add(1, Ordering::SeqCst) >= self.limits.tool_calls {
            return budget(format!(
                "this execution has made its {} tool calls, the most one may (--max-tool-calls)",
                self.limits.tool_calls
            ));
        }
        let this_tool = self.made_per_tool.lock().map_or(0, |mut made| {
            let count = made.entry(qualified.clone()).or_insert(0);
            *count += 1;
            *count
        });
        if this_tool > self.limits.calls_per_tool {
            return budget(format!(
                "this execution has called it {} times, the most one may call one tool (--max-calls-per-tool)",
                self.limits.calls_per_tool
            ));
        }
        if self.received.load(Ordering::SeqCst) > self.limits.received_bytes {
            return budget(format!(
                "this execution has received more than {} of tool results, the most one may (--max-received-kib)",
                human_bytes(self.limits.received_bytes)
            ));
        }
        let Some(tool) = self.catalog.find(&call.namespace, &call.tool).cloned() else {
            return immediate(
                Decision::NoSuchTool,
                fail(format!("{shown_as} does not exist"), None),
            );
        };
        let arguments: Value = match serde_json::from_str(&call.arguments) {
            Ok(Value::Object(arguments)) => Value::Object(arguments),
            _ => {
                return immediate(
                    Decision::InvalidArguments,
                    fail(
                        format!("{shown_as}: the arguments must be one JSON object"),
                        None,
                    ),
                );
            }
        };
        if let Err(invalid) = tool.validate(&arguments) {
            return immediate(
                Decision::InvalidArguments,
                fail(
                    format!(
                        "{shown_as}: invalid arguments: {} (search_tools shows its declaration)",
                        invalid.message
                    ),
                    Some(invalid.schema_path),
                ),
            );
        }
        let Value::Object(arguments) = arguments else {
            return immediate(
                Decision::InvalidArguments,
                fail(format!("{shown_as}: bad arguments"), None),
            );
        };
        let target = if tool.builtin {
            match self.builtins.handler(&tool.upstream, &tool.mcp_name) {
                Some(handler) => Target::Builtin(handler),
                None => {
                    return immediate(
                        Decision::Unavailable,
                        fail(format!("{shown_as} is gone"), None),
                    );
                }
            }
        } else {
            match self.upstreams.get(&tool.upstream) {
                Some(upstream) => Target::Upstream(upstream.clone(), tool.mcp_name.clone()),
                None => {
                    return immediate(
                        Decision::Unavailable,
                        fail(format!("{shown_as}: its server is gone"), None),
                    );
                }
            }
        };
        let gate = match self.gate(Pending {
            name: &qualified,
            shown_as: &shown_as,
            arguments: &call.arguments,
            site: call.site,
            needs_rule: tool.access == Access::Confirm,
            flow: tool.flow,
            allow_rule: Some(format!(
                "{{\"tools\": \"{}.{}\", \"action\": \"allow\"}}",
                tool.upstream, tool.mcp_name
            )),
        }) {
            Ok(gate) => gate,
            Err((decision, message)) => return immediate(decision, fail(message, None)),
        };
        let settlement = self.settlement(
            qualified,
            None,
            shown_as,
            started,
            args_bytes,
            tool.flow.source,
        );
        let depth = self.depth;
        let session = self.session.clone();
        let taint = self.tainted.clone();
        let state_used = self.state_used.clone();
        let learning = tool.clone();
        let task = self.runtime.spawn(async move {
            let traceparent = settlement.start_span();
            let decision = match settlement.confirm(gate).await {
                Ok(decision) => decision,
                Err(reply) => return reply,
            };
            let shown_as = &settlement.shown_as;
            let reply = match target {
                Target::Builtin(handler) => {
                    let caller = crate::catalog::Caller {
                        session,
                        depth,
                        taint,
                        state_used,
                    };
                    match crate::catalog::on_behalf_of(caller, handler(arguments)).await {
                        Ok(value) => ToolReply::Ok(value.to_string()),
                        Err(message) => fail(format!("{shown_as} failed: {message}"), None),
                    }
                }
                Target::Upstream(upstream, name) => {
                    match upstream.call(&name, arguments, depth, traceparent).await {
                        Ok(result) => match program_value(result) {
                            Ok(value) => {
                                learning.observe_result(&value);
                                ToolReply::Ok(value.to_string())
                            }
                            Err(message) => fail(format!("{shown_as} failed: {message}"), None),
                        },
                        Err(err) => fail(format!("{shown_as}: {err}"), None),
                    }
                }
            };
            settlement.finish(reply, decision)
        });
        Box::pin(AbortOnDrop(task))
    }

    fn fetch(&self, request: String) -> ReplyFuture {
        let started = Instant::now();
        let args_bytes = request.len();
        let immediate =
            |target: Option<String>, decision: Decision, reply: ToolReply| -> ReplyFuture {
                self.recorder
                    .record(FETCH, target, started, args_bytes, decision, &reply, None);
                Box::pin(std::future::ready(reply))
            };
        let Ok(request) = serde_json::from_str::<FetchRequest>(&request) else {
            return immediate(
                None,
                Decision::InvalidArguments,
                fail("fetch: the request could not be read".into(), None),
            );
        };
        let target = request.target();
        let Some(egress) = self.egress.clone() else {
            return immediate(
                Some(target),
                Decision::EgressOff,
                fail(
                    "fetch is off: the server allows no URLs (codemode.egress.rules)".into(),
                    None,
                ),
            );
        };
        if self.fetched.fetch_add(1, Ordering::SeqCst) >= self.limits.fetches {
            return self.refuse_budget(
                FETCH,
                Some(target),
                started,
                args_bytes,
                format!(
                    "fetch was not made: this execution has made its {} fetches, the most one may (codemode.limits.fetches). Fetch fewer URLs per execution, or split the task over several",
                    self.limits.fetches
                ),
            );
        }
        if self.received.load(Ordering::SeqCst) > self.limits.received_bytes {
            return self.refuse_budget(
                FETCH,
                Some(target),
                started,
                args_bytes,
                format!(
                    "fetch was not made: this execution has received more than {} of tool results and responses, the most one may (--max-received-kib)",
                    human_bytes(self.limits.received_bytes)
                ),
            );
        }
        let shown_as = format!("fetch {target}");
        let arguments = request
            .body
            .as_deref()
            .unwrap_or("")
            .chars()
            .take(2_000)
            .collect::<String>();
        let gate = match self.gate(Pending {
            name: FETCH,
            shown_as: &shown_as,
            arguments: &arguments,
            site: request.site,
            needs_rule: false,
            flow: self.fetch_flow,
            allow_rule: None,
        }) {
            Ok(gate) => gate,
            Err((decision, message)) => {
                return immediate(Some(target), decision, fail(message, None));
            }
        };
        let settlement = self.settlement(
            FETCH.to_string(),
            Some(target),
            shown_as,
            started,
            args_bytes,
            self.fetch_flow.source,
        );
        let task = self.runtime.spawn(async move {
            // Third-party URLs get no trace context.
            let _ = settlement.start_span();
            let decision = match settlement.confirm(gate).await {
                Ok(decision) => decision,
                Err(reply) => return reply,
            };
            let (reply, decision) = match egress.fetch(request).await {
                Ok(response) => match serde_json::to_string(&response) {
                    Ok(json) => (ToolReply::Ok(json), decision),
                    Err(err) => (fail(format!("fetch failed: {err}"), None), decision),
                },
                Err(failure) if failure.refused => (fail(failure.message, None), Decision::Egress),
                Err(failure) => (fail(failure.message, None), decision),
            };
            settlement.finish(reply, decision)
        });
        Box::pin(AbortOnDrop(task))
    }
}

/// Who answers a call.
enum Target {
    Builtin(BuiltinHandler),
    Upstream(Arc<Upstream>, String),
}

/// An upstream call stops when the execution that made it is dropped (timeout, cancel).
struct AbortOnDrop(JoinHandle<ToolReply>);

impl Future for AbortOnDrop {
    type Output = ToolReply;

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<ToolReply> {
        Pin::new(&mut self.0)
            .poll(cx)
            .map(|joined| joined.unwrap_or_else(|_| fail("the call was abandoned".into(), None)))
    }
}

impl Drop for AbortOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// A tool result as the program receives it: `structuredContent` if present; else a single
/// text that parses as JSON, as that value; else the text; other content kinds as objects.
/// `isError` results are errors, with the tool's own text as the message.
pub(crate) fn program_value(result: CallToolResult) -> Result<Value, String> {
    if result.is_error == Some(true) {
        let text: Vec<String> = result
            .content
            .iter()
            .filter_map(|c| c.as_text().map(|t| t.text.clone()))
            .collect();
        return Err(if text.is_empty() {
            "the tool reported an error without a message".to_string()
        } else {
            text.join("\n")
        });
    }
    if let Some(structured) = result.structured_content {
        return Ok(structured);
    }
    let mut values: Vec<Value> = result
        .content
        .into_iter()
        .map(|block| match &block {
            ContentBlock::Text(text) => serde_json::from_str(&text.text)
                .unwrap_or_else(|_| Value::String(text.text.clone())),
            _ => serde_json::to_value(&block).unwrap_or(Value::Null),
        })
        .collect();
    Ok(match values.len() {
        0 => Value::Null,
        1 => values.remove(0),
        _ => Value::Array(values),
    })
}
