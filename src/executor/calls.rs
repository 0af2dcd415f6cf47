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
use schemars::JsonSchema;
use serde::Serialize;
use serde_json::Value;
use tokio::{runtime::Handle, sync::mpsc, task::JoinHandle};

use crate::{
    catalog::{BuiltinHandler, Builtins, Catalog, LiveCatalog},
    policy::{Access, ConfirmRequest, Confirmation, SharedConfirmer},
    sandbox::{Limits, ReplyFuture, ToolCall, ToolFailure, ToolHost, ToolReply, human_bytes},
    upstream::{Upstream, Upstreams},
};

/// One tool call of an execution, as listed in the reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct CallRecord {
    /// `namespace.tool`.
    pub tool: String,
    /// Milliseconds from the call to its answer.
    pub ms: u64,
    /// Whether it produced a result (false: the program got a `ToolError`).
    pub ok: bool,
    /// Why it failed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
    /// Bytes of the arguments as JSON (for the audit log, not the model).
    #[serde(skip)]
    pub args_bytes: usize,
    /// Bytes of the result as JSON (for the audit log, not the model).
    #[serde(skip)]
    pub result_bytes: usize,
    /// What the policy and budgets decided: `allowed`, `confirmed by the user`,
    /// `refused: budget`, ... (for the audit log).
    #[serde(skip)]
    pub decision: &'static str,
}

/// Answers the tool calls of one execution.
pub(super) struct CallHost {
    /// The execution's tool-call and result-size budgets.
    limits: Limits,
    made: AtomicU32,
    made_per_tool: Mutex<HashMap<String, u32>>,
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
    /// Tools the user approved for the rest of this execution.
    approved: Arc<Mutex<HashSet<String>>>,
}

impl CallHost {
    pub(super) fn new(
        tools: &LiveCatalog,
        catalog: Arc<Catalog>,
        runtime: Handle,
        limits: Limits,
        progress: Option<mpsc::UnboundedSender<CallRecord>>,
        confirmer: Option<SharedConfirmer>,
    ) -> Self {
        Self {
            limits,
            made_per_tool: Mutex::default(),
            received: Arc::default(),
            over_budget: Arc::default(),
            confirmer,
            approved: Arc::default(),
            made: AtomicU32::new(0),
            catalog,
            upstreams: tools.upstreams().clone(),
            builtins: tools.builtins().clone(),
            runtime,
            recorder: Recorder {
                records: Arc::default(),
                progress,
            },
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
}

/// Keeps each finished call, and reports it to whoever follows the execution's progress.
#[derive(Clone)]
struct Recorder {
    records: Arc<Mutex<Vec<CallRecord>>>,
    progress: Option<mpsc::UnboundedSender<CallRecord>>,
}

impl Recorder {
    fn record(
        &self,
        tool: &str,
        started: Instant,
        args_bytes: usize,
        decision: &'static str,
        reply: &ToolReply,
    ) {
        let (ok, error, result_bytes) = match reply {
            ToolReply::Ok(json) => (true, None, json.len()),
            ToolReply::Err(failure) => (false, Some(failure.message.clone()), 0),
        };
        let record = CallRecord {
            tool: tool.to_string(),
            ms: u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX),
            ok,
            error,
            args_bytes,
            result_bytes,
            decision,
        };
        if let Some(progress) = &self.progress {
            let _ = progress.send(record.clone());
        }
        if let Ok(mut records) = self.records.lock() {
            records.push(record);
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
    fn call_tool(&self, call: ToolCall) -> ReplyFuture {
        let started = Instant::now();
        let qualified = format!("{}.{}", call.namespace, call.tool);
        let args_bytes = call.arguments.len();
        let immediate = |decision: &'static str, reply: ToolReply| -> ReplyFuture {
            self.recorder
                .record(&qualified, started, args_bytes, decision, &reply);
            Box::pin(std::future::ready(reply))
        };
        let refuse = |why: String| {
            self.over_budget.store(true, Ordering::SeqCst);
            immediate(
                "refused: budget",
                fail(
                    format!(
                        "tools.{qualified} was not called: {why}. Do fewer calls per execution (a tool that takes many items at once, or split the task over several executions)"
                    ),
                    None,
                ),
            )
        };
        if self.made.fetch_add(1, Ordering::SeqCst) >= self.limits.tool_calls {
            return refuse(format!(
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
            return refuse(format!(
                "this execution has called it {} times, the most one may call one tool (--max-calls-per-tool)",
                self.limits.calls_per_tool
            ));
        }
        if self.received.load(Ordering::SeqCst) > self.limits.received_bytes {
            return refuse(format!(
                "this execution has received more than {} of tool results, the most one may (--max-received-kib)",
                human_bytes(self.limits.received_bytes)
            ));
        }
        let Some(tool) = self.catalog.find(&call.namespace, &call.tool).cloned() else {
            return immediate(
                "refused: no such tool",
                fail(format!("tools.{qualified} does not exist"), None),
            );
        };
        let arguments: Value = match serde_json::from_str(&call.arguments) {
            Ok(Value::Object(arguments)) => Value::Object(arguments),
            _ => {
                return immediate(
                    "refused: invalid arguments",
                    fail(
                        format!("tools.{qualified}: the arguments must be one JSON object"),
                        None,
                    ),
                );
            }
        };
        if let Err(invalid) = tool.validate(&arguments) {
            return immediate(
                "refused: invalid arguments",
                fail(
                    format!(
                        "tools.{qualified}: invalid arguments: {} (search_tools shows its declaration)",
                        invalid.message
                    ),
                    Some(invalid.schema_path),
                ),
            );
        }
        let Value::Object(arguments) = arguments else {
            return immediate(
                "refused: invalid arguments",
                fail(format!("tools.{qualified}: bad arguments"), None),
            );
        };
        let target = if tool.builtin {
            match self.builtins.handler(&tool.upstream, &tool.mcp_name) {
                Some(handler) => Target::Builtin(handler),
                None => {
                    return immediate(
                        "refused: unavailable",
                        fail(format!("tools.{qualified} is gone"), None),
                    );
                }
            }
        } else {
            match self.upstreams.get(&tool.upstream) {
                Some(upstream) => Target::Upstream(upstream.clone(), tool.mcp_name.clone()),
                None => {
                    return immediate(
                        "refused: unavailable",
                        fail(format!("tools.{qualified}: its server is gone"), None),
                    );
                }
            }
        };
        let approved = self.approved.clone();
        let confirmation = if tool.access == Access::Confirm
            && !approved
                .lock()
                .map(|a| a.contains(&qualified))
                .unwrap_or(false)
        {
            match &self.confirmer {
                Some(confirmer) => Some(confirmer.confirm(ConfirmRequest {
                    tool: qualified.clone(),
                    arguments: call.arguments.clone(),
                })),
                None => {
                    return immediate(
                        "refused: nobody to confirm",
                        fail(
                            format!(
                                "tools.{qualified} was not called: the policy (codemode.policy) asks the user to confirm it, and nobody can be asked here. The user can allow it with the rule {{\"tools\": \"{}.{}\", \"action\": \"allow\"}}",
                                tool.upstream, tool.mcp_name
                            ),
                            None,
                        ),
                    );
                }
            }
        } else {
            None
        };
        let approved_earlier = tool.access == Access::Confirm && confirmation.is_none();
        let recorder = self.recorder.clone();
        let (received, received_budget, over_budget) = (
            self.received.clone(),
            self.limits.received_bytes,
            self.over_budget.clone(),
        );
        let task = self.runtime.spawn(async move {
            let mut decision = if approved_earlier {
                "confirmed earlier in the execution"
            } else {
                "allowed"
            };
            if let Some(confirmation) = confirmation {
                match confirmation.await {
                    Confirmation::Once => decision = "confirmed by the user",
                    Confirmation::ForExecution => {
                        decision = "confirmed for the execution";
                        if let Ok(mut approved) = approved.lock() {
                            approved.insert(qualified.clone());
                        }
                    }
                    Confirmation::Denied(why) => {
                        let reply = fail(format!("tools.{qualified} was not called: {why}"), None);
                        recorder.record(&qualified, started, args_bytes, "refused: not confirmed", &reply);
                        return reply;
                    }
                }
            }
            let reply = match target {
                Target::Builtin(handler) => match handler(arguments).await {
                    Ok(value) => ToolReply::Ok(value.to_string()),
                    Err(message) => fail(format!("tools.{qualified} failed: {message}"), None),
                },
                Target::Upstream(upstream, name) => match upstream.call(&name, arguments).await {
                    Ok(result) => match program_value(result) {
                        Ok(value) => ToolReply::Ok(value.to_string()),
                        Err(message) => fail(format!("tools.{qualified} failed: {message}"), None),
                    },
                    Err(err) => fail(format!("tools.{qualified}: {err}"), None),
                },
            };
            // The result that passes the byte budget is withheld, and so are later ones.
            let reply = match reply {
                ToolReply::Ok(json) => {
                    let total = received.fetch_add(json.len(), Ordering::SeqCst) + json.len();
                    if total > received_budget {
                        over_budget.store(true, Ordering::SeqCst);
                        decision = "result withheld: budget";
                        fail(
                            format!(
                                "tools.{qualified}: its result was withheld: this execution has received {} of tool results, more than the most one may ({}, --max-received-kib). Ask tools for less (filters, pages, fields)",
                                human_bytes(total),
                                human_bytes(received_budget)
                            ),
                            None,
                        )
                    } else {
                        ToolReply::Ok(json)
                    }
                }
                failed => failed,
            };
            recorder.record(&qualified, started, args_bytes, decision, &reply);
            reply
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
