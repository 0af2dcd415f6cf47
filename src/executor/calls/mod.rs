//! The host side of `tools.<ns>.<tool>(args)` and `fetch`, as stages: a call is counted
//! against the [`budget`]s, found and validated ([`lookup`]), asked about at the policy's
//! [`gate`], dispatched to its builtin or upstream on the server's runtime, and settled
//! ([`settle`]: the user's word, the byte budget, the data-flow mark, the [`record`]).
//! [`value`] maps an MCP result to the value a program receives.

mod budget;
mod discover;
mod dispatch;
mod fetch;
mod gate;
mod lookup;
mod record;
mod settle;
mod value;

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

use tokio::{runtime::Handle, sync::mpsc, task::JoinHandle};

pub(crate) use value::program_value;

use gate::Pending;
use record::Recorder;

use crate::{
    catalog::{Builtins, Catalog, LiveCatalog},
    egress::Egress,
    oversight::ExecutionTrace,
    policy::{Access, DataFlowMode, FETCH, Flow, SharedConfirmer, gate::Approval},
    record::{CallRecord, Decision},
    sandbox::{Limits, ReplyFuture, RunClock, ToolCall, ToolFailure, ToolHost, ToolReply},
    tenants::{Tenancy, quota::Meter},
    upstream::Upstreams,
};

/// Characters of a refusal the glue reports that are kept (the name in it is the
/// program's, of any length).
const REFUSAL_CHARS: usize = 1_000;
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
    /// See [`CallSettings::principal`].
    principal: Option<String>,
    /// See [`crate::catalog::Caller::state_used`].
    state_used: Arc<AtomicBool>,
    /// The overlays of the execution's principal: its fetches are checked against them.
    tenancy: Arc<Tenancy>,
    /// The execution's share of its principal's daily quotas; none: no quota applies.
    meter: Option<Arc<Meter>>,
    /// What the principal's quota windows are kept under, for the skills it calls.
    quota_key: Option<String>,
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
    /// Who asked for the execution, for the skills it calls.
    pub(super) principal: Option<String>,
    /// The data-flow mark of the execution that called this one (a skill's caller), to
    /// share; `None`: a fresh one.
    pub(super) taint: Option<crate::catalog::Taint>,
    /// Whom to tell that the execution used its `state.*` store; `None`: nobody asks.
    pub(super) state_used: Option<Arc<AtomicBool>>,
    /// See [`CallHost::tenancy`].
    pub(super) tenancy: Arc<Tenancy>,
    /// See [`CallHost::meter`].
    pub(super) meter: Option<Arc<Meter>>,
    /// See [`CallHost::quota_key`].
    pub(super) quota_key: Option<String>,
}

impl CallHost {
    /// A host with the default limits and nobody to ask, for the stages' unit tests.
    #[cfg(test)]
    pub(super) fn for_tests(tools: &LiveCatalog, catalog: Arc<Catalog>) -> Self {
        Self::for_tests_with(tools, catalog, Limits::default())
    }

    /// A host with `limits` and nobody to ask, for the stages' unit tests.
    #[cfg(test)]
    pub(super) fn for_tests_with(
        tools: &LiveCatalog,
        catalog: Arc<Catalog>,
        limits: Limits,
    ) -> Self {
        Self::new(
            tools,
            catalog,
            Handle::current(),
            CallSettings {
                limits,
                progress: None,
                confirmer: None,
                clock: RunClock::default(),
                egress: None,
                depth: 0,
                trace: None,
                session: "-".into(),
                principal: None,
                taint: None,
                state_used: None,
                tenancy: Tenancy::unrestricted(),
                meter: None,
                quota_key: None,
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
            principal: settings.principal,
            state_used: settings.state_used.unwrap_or_default(),
            tenancy: settings.tenancy,
            meter: settings.meter,
            quota_key: settings.quota_key,
        }
    }

    /// The quota a call or fetch was refused for, if any was.
    pub(super) fn over_quota(&self) -> Option<crate::tenants::quota::Quota> {
        self.meter.as_ref().and_then(|meter| meter.refused())
    }

    /// Whether a call was refused for a budget.
    pub(super) fn over_budget(&self) -> bool {
        self.over_budget.load(Ordering::SeqCst)
    }

    /// Every call of the run, once its program has ended (see [`Recorder::close`]).
    pub(super) fn final_records(&self) -> Vec<CallRecord> {
        self.recorder.close()
    }

    /// Approves `names` for the rest of the execution (the pre-flight confirmation).
    pub(super) fn approve(&self, names: impl IntoIterator<Item = String>) {
        if let Ok(mut approved) = self.approved.lock() {
            approved.extend(names.into_iter().map(|name| Approval::UpFront.key(&name)));
        }
    }
}

fn fail(message: String, schema_path: Option<String>) -> ToolReply {
    ToolReply::Err(ToolFailure {
        message,
        schema_path,
    })
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
        // A refusal of the glue's (`tools.$`, say) is recorded as any other, below.
        if call.namespace == discover::NAMESPACE && !call.arguments.starts_with('\u{0}') {
            return self.discover(&call);
        }
        let started = Instant::now();
        // A made-up name is the program's, of any length: records keep its head.
        let qualified: String = format!("{}.{}", call.namespace, call.tool)
            .chars()
            .take(NAME_CHARS)
            .collect();
        let shown_as = format!("tools.{qualified}");
        let args_bytes = call.arguments.len();
        let at_once = |decision: Decision, reply: ToolReply| -> ReplyFuture {
            self.recorder.record(
                &qualified, None, started, args_bytes, decision, &reply, None,
            );
            Box::pin(std::future::ready(reply))
        };
        let over_budget = |why: String| {
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
            if let Err(why) = self.count_call(None) {
                return over_budget(why);
            }
            let name: String = if call.tool.is_empty() {
                call.namespace.chars().take(NAME_CHARS).collect()
            } else {
                qualified.clone()
            };
            let reply = fail(message.chars().take(REFUSAL_CHARS).collect(), None);
            self.recorder
                .record(&name, None, started, 0, Decision::InvalidCall, &reply, None);
            return Box::pin(std::future::ready(reply));
        }
        if let Err(why) = self.count_call(Some(&qualified)) {
            return over_budget(why);
        }
        let found = match self.lookup(&call, &shown_as) {
            Ok(found) => found,
            Err((decision, reply)) => return at_once(decision, reply),
        };
        let tool = &found.tool;
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
            Err((decision, message)) => return at_once(decision, fail(message, None)),
        };
        // Counted against the daily quota as it goes out, after every check that could
        // stop it first.
        if let Some(meter) = &self.meter
            && let Err(why) = meter.take_call()
        {
            return at_once(
                Decision::Quota,
                fail(format!("{shown_as} was not called: {why}"), None),
            );
        }
        let settlement = self.settlement(
            qualified,
            None,
            shown_as,
            started,
            args_bytes,
            tool.flow.source,
        );
        self.dispatch(found, gate, settlement)
    }

    fn fetch(&self, request: String) -> ReplyFuture {
        self.fetch_through_egress(request)
    }
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

#[cfg(test)]
mod tests {
    use schemars::JsonSchema;
    use serde::Deserialize;

    use super::*;
    use crate::{catalog::BuiltinTool, policy::Policy, upstream::Upstreams};

    #[derive(Deserialize, JsonSchema)]
    struct Double {
        n: i64,
    }

    /// A catalog of `math.double` (answers at once) and `math.stall` (never answers).
    fn tools() -> LiveCatalog {
        let mut builtins = Builtins::none();
        builtins.add(
            "math",
            BuiltinTool::new(
                "double",
                "Doubles n",
                |d: Double| async move { Ok(d.n * 2) },
            ),
        );
        builtins.add(
            "math",
            BuiltinTool::new("stall", "Never answers", |_: Double| {
                std::future::pending::<Result<i64, String>>()
            }),
        );
        LiveCatalog::with(Upstreams::none(), Arc::new(builtins), Policy::default())
    }

    fn call(tool: &str, arguments: &str) -> ToolCall {
        ToolCall {
            namespace: "math".into(),
            tool: tool.into(),
            arguments: arguments.into(),
            site: None,
        }
    }

    fn failure(reply: ToolReply) -> ToolFailure {
        match reply {
            ToolReply::Err(failure) => failure,
            ToolReply::Ok(json) => panic!("expected a failure, got {json}"),
        }
    }

    #[tokio::test]
    async fn a_call_is_looked_up_validated_dispatched_and_recorded() {
        let tools = tools();
        let host = CallHost::for_tests(&tools, tools.current());
        let ToolReply::Ok(json) = host.call_tool(call("double", r#"{"n": 21}"#)).await else {
            panic!("the call failed");
        };
        assert_eq!(json, "42");
        let missing = failure(host.call_tool(call("triple", r#"{"n": 1}"#)).await);
        assert_eq!(missing.message, "tools.math.triple does not exist");
        let invalid = failure(host.call_tool(call("double", r#"{"n": "x"}"#)).await);
        assert!(
            invalid
                .message
                .starts_with("tools.math.double: invalid arguments"),
            "{}",
            invalid.message
        );
        assert!(invalid.schema_path.is_some());
        let not_object = failure(host.call_tool(call("double", "[1]")).await);
        assert!(
            not_object.message.contains("one JSON object"),
            "{}",
            not_object.message
        );
        let decisions: Vec<Decision> = host.final_records().iter().map(|r| r.decision).collect();
        assert_eq!(
            decisions,
            [
                Decision::Allowed,
                Decision::NoSuchTool,
                Decision::InvalidArguments,
                Decision::InvalidArguments
            ]
        );
        assert!(!host.over_budget());
    }

    #[tokio::test]
    async fn the_budgets_refuse_past_their_count_and_say_which_flag() {
        let tools = tools();
        let limits = Limits {
            tool_calls: 3,
            calls_per_tool: 1,
            ..Limits::default()
        };
        let host = CallHost::for_tests_with(&tools, tools.current(), limits);
        assert!(matches!(
            host.call_tool(call("double", r#"{"n": 1}"#)).await,
            ToolReply::Ok(_)
        ));
        let again = failure(host.call_tool(call("double", r#"{"n": 2}"#)).await);
        assert!(
            again.message.contains("--max-calls-per-tool"),
            "{}",
            again.message
        );
        assert!(host.over_budget());
        // A refusal the glue made counts against the execution's calls too.
        let refused = failure(
            host.call_tool(call("x", "\u{0}tools.math.x is not a function"))
                .await,
        );
        assert_eq!(refused.message, "tools.math.x is not a function");
        let past = failure(host.call_tool(call("stall", r#"{"n": 3}"#)).await);
        assert!(
            past.message.contains("--max-tool-calls"),
            "{}",
            past.message
        );
        let decisions: Vec<Decision> = host.final_records().iter().map(|r| r.decision).collect();
        assert_eq!(
            decisions,
            [
                Decision::Allowed,
                Decision::Budget,
                Decision::InvalidCall,
                Decision::Budget
            ]
        );
    }

    #[tokio::test]
    async fn a_call_still_in_flight_at_the_end_is_recorded_once_as_abandoned() {
        let tools = tools();
        let host = CallHost::for_tests(&tools, tools.current());
        let stalled = host.call_tool(call("stall", r#"{"n": 1}"#));
        let records = host.final_records();
        assert_eq!(records.len(), 1);
        assert_eq!(records[0].decision, Decision::Abandoned);
        assert!(
            records[0]
                .error
                .as_deref()
                .is_some_and(|e| e.contains("not awaited"))
        );
        drop(stalled);
        tokio::task::yield_now().await;
        assert_eq!(host.final_records().len(), 1);
    }
}
