//! An execution as the model reads it: a text block (result JSON, then logs) and the same
//! facts as `structuredContent`.

use rmcp::model::{CallToolResult, ContentBlock, Resource};
use schemars::JsonSchema;
use serde::Serialize;

use super::Outputs;
use crate::{
    executor::{CallRecord, Execution},
    record::Decision,
    sandbox::{ErrorKind, LogEntry, Truncation, human_bytes},
};

/// Structured output of `execute_code`.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ExecuteCodeOutput {
    /// What the output budget and the caps cut, one notice each; first, so that a reader cutting from the end still sees it.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub truncated: Vec<String>,
    /// The value the program returned, as JSON. `null` when it returned nothing or failed. When the result cap cut it, the kept beginning of its JSON text, as a string; when the output budget cut it, the head and tail of its JSON text, as a string.
    pub result: serde_json::Value,
    /// Console output in order.
    pub logs: Vec<LogEntry>,
    /// Wall-clock time of the execution, in milliseconds.
    pub duration_ms: u64,
    /// CPU time the program used (user + system, as the kernel counted it), in milliseconds: what a CPU quota is charged. Absent when nothing ran.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cpu_ms: Option<f64>,
    /// Each tool call the program made, in the order they finished.
    pub calls: Vec<CallRecord>,
    /// Why the program failed; absent on success.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorReport>,
    /// What the program may not have meant, and what to do (a missing `return`).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub hints: Vec<String>,
    /// Whether the output budget cut `result` (the text then shows the string it holds).
    #[serde(skip)]
    #[schemars(skip)]
    pub(crate) result_cut: bool,
    /// The handle of the `state.*` store this run used, to pass as `state` to the next execute_code that should see the same values; absent when the session keeps the store.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub state: Option<String>,
}

/// A failure, for the model to act on.
#[derive(Debug, Clone, Serialize, JsonSchema)]
#[serde(rename_all = "camelCase")]
pub struct ErrorReport {
    /// `syntax`, `runtime`, `timeout`, `memory`, `output`, `busy` or `cancelled`.
    pub kind: ErrorKind,
    /// What went wrong.
    pub message: String,
    /// 1-based line in the submitted code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub line: Option<u32>,
    /// 1-based column in the submitted code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub column: Option<u32>,
    /// The program's own stack frames, positions in the submitted code.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stack: Option<String>,
    /// The tool whose failure ended the program (kind `tool`), as `namespace.tool`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tool: Option<String>,
    /// JSON pointer into that tool's input schema, when its arguments were invalid.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub schema_path: Option<String>,
}

/// The structured output of an execution.
pub fn output(execution: &Execution) -> ExecuteCodeOutput {
    let outcome = &execution.outcome;
    let mut truncated = Vec::new();
    if let Some(cut) = outcome.logs_truncated {
        truncated.push(logs_notice(cut));
    }
    let (result, error) = match &outcome.result {
        Ok(value) => match value.truncated {
            None => (
                serde_json::from_str(&value.json).unwrap_or(serde_json::Value::Null),
                None,
            ),
            Some(cut) => {
                truncated.push(result_notice(cut));
                (serde_json::Value::String(value.json.clone()), None)
            }
        },
        Err(err) => (
            serde_json::Value::Null,
            Some(ErrorReport {
                kind: err.kind,
                message: err.message.clone(),
                line: err.position.map(|p| p.line),
                column: err.position.map(|p| p.column),
                stack: err.stack.clone(),
                tool: err.tool.clone(),
                schema_path: err.schema_path.clone(),
            }),
        ),
    };
    ExecuteCodeOutput {
        result,
        logs: outcome.logs.clone(),
        duration_ms: u64::try_from(execution.duration.as_millis()).unwrap_or(u64::MAX),
        cpu_ms: execution
            .outcome
            .cpu
            .map(|cpu| (cpu.as_secs_f64() * 10_000.0).round() / 10.0),
        calls: execution.calls.clone(),
        error,
        hints: hints(execution),
        truncated,
        result_cut: false,
        state: None,
    }
}

/// The tool result of a refusal: short, never cut.
pub(super) fn call_tool_result(execution: &Execution) -> CallToolResult {
    call_tool_result_in(
        execution,
        None,
        &Budget {
            chars: usize::MAX,
            keep: None,
        },
    )
}

/// How much of an answer a model reads, and where the whole of one cut to it is kept.
pub(super) struct Budget<'a> {
    /// Characters of each block (`codemode.limits.outputChars`, or less for this call).
    pub(super) chars: usize,
    /// The store of whole outputs and the owner of this one; `None`: not kept.
    pub(super) keep: Option<(&'a Outputs, &'a str)>,
}

/// The tool result of a run that used the `state.*` store named by `handle` (if any):
/// text for the model, structured content for programs, both within `budget`.
pub(super) fn call_tool_result_in(
    execution: &Execution,
    handle: Option<&str>,
    budget: &Budget<'_>,
) -> CallToolResult {
    let mut output = output(execution);
    output.state = handle.map(str::to_string);
    let render = |output: &ExecuteCodeOutput| text_with_state(execution, output, handle);
    let mut link = None;
    let whole = render(&output);
    let whole_json = serde_json::to_string(&output).unwrap_or_default();
    // What fits is rendered once; only a cut answer is rendered again.
    let text = if whole.chars().count().max(whole_json.chars().count())
        > budget.chars.max(super::budget::MIN_CHARS)
    {
        link = budget.keep.and_then(|(outputs, owner)| {
            outputs
                .keep(owner, whole, whole_json)
                .map(|uri| (uri, outputs.keep_for()))
        });
        super::budget::fit(&mut output, budget.chars, render, |cut| {
            truncation_notice(cut, link.as_ref())
        });
        render(&output)
    } else {
        whole
    };
    let is_error = output.error.is_some();
    let structured = serde_json::to_value(&output).unwrap_or(serde_json::Value::Null);
    let mut result = if is_error {
        CallToolResult::structured_error(structured)
    } else {
        CallToolResult::structured(structured)
    };
    result.content = vec![ContentBlock::text(text)];
    if let Some((uri, _)) = link {
        result.content.push(ContentBlock::resource_link(
            Resource::new(uri, "output")
                .with_description("The whole output of this execution, before the budget cut it")
                .with_mime_type("text/plain"),
        ));
    }
    result
}

/// The text block, with the state handle's line.
fn text_with_state(
    execution: &Execution,
    output: &ExecuteCodeOutput,
    handle: Option<&str>,
) -> String {
    let mut text = text(execution, output);
    if let Some(handle) = handle {
        text.push_str(&format!(
            "\n\nstate: {handle} (pass it as execute_code's `state` to see these state.* values again)"
        ));
    }
    text
}

/// What the model is told first when the budget cut its answer.
fn truncation_notice(
    cut: &super::budget::Cut,
    link: Option<&(String, std::time::Duration)>,
) -> String {
    let counts = format!(
        "output truncated: {} characters, {} shown (the head and tail of each part)",
        super::budget::thousands(cut.total),
        super::budget::thousands(cut.shown)
    );
    match link {
        Some((uri, keep)) => format!(
            "{counts}; the whole output is at {uri} for {} minutes (resources/read). Return less to see it all here: filter, count or summarise inside the program",
            keep.as_secs().div_ceil(60)
        ),
        None => format!("{counts}. Return less: filter, count or summarise inside the program"),
    }
}

/// The text a model reads: what was cut first (a reader cutting from the end still sees
/// it), then the result (or the error), the logs, the calls.
pub fn text(execution: &Execution, output: &ExecuteCodeOutput) -> String {
    let mut text = String::new();
    for notice in &output.truncated {
        text.push('[');
        text.push_str(notice);
        text.push_str("]\n\n");
    }
    text.push_str(&match (&output.error, &execution.outcome.result) {
        (Some(error), _) => {
            let mut head = format!("{} error", error.kind);
            if let (Some(line), Some(column)) = (error.line, error.column) {
                head.push_str(&format!(" at {line}:{column}"));
            }
            head.push_str(": ");
            head.push_str(&error.message);
            if let Some(path) = &error.schema_path {
                head.push_str(&format!(" (schema path {path})"));
            }
            if let Some(stack) = &error.stack {
                for frame in stack.lines() {
                    head.push_str("\n    ");
                    head.push_str(frame);
                }
            }
            head
        }
        (None, Ok(_)) if output.result_cut => {
            output.result.as_str().unwrap_or_default().to_string()
        }
        (None, Ok(value)) => value.json.clone(),
        (None, Err(_)) => String::new(),
    });
    if !output.logs.is_empty() {
        text.push_str(if output.error.is_some() {
            "\n\nlogs so far:"
        } else {
            "\n\nlogs:"
        });
        for entry in &output.logs {
            text.push_str(&format!("\n[{}] {}", entry.level.as_str(), entry.message));
        }
    }
    for hint in &output.hints {
        text.push_str("\n\nhint: ");
        text.push_str(hint);
    }
    // Counted from the execution: the budget may have cut the list.
    if !execution.calls.is_empty() {
        let failed = execution.calls.iter().filter(|c| !c.ok).count();
        text.push_str(&format!(
            "\n\ntool calls: {} ({} failed)",
            execution.calls.len(),
            failed
        ));
    }
    text
}

/// What a model should know that the result alone does not say.
fn hints(execution: &Execution) -> Vec<String> {
    let outcome = &execution.outcome;
    // A worker's outcome is the worker's word: a few hints, each of bounded length.
    let mut hints: Vec<String> = outcome
        .unawaited
        .iter()
        .take(5)
        .map(|hint| hint.chars().take(1_000).collect())
        .collect();
    let unanswered: Vec<&str> = execution
        .calls
        .iter()
        .filter(|call| matches!(call.decision, Decision::Abandoned | Decision::NotSent))
        .map(|call| call.tool.as_str())
        .collect();
    if let Some(first) = unanswered.first() {
        let more = match unanswered.len() {
            1 => String::new(),
            n => format!(" (and {} more calls)", n - 1),
        };
        hints.push(format!(
            "{}{more} was still unanswered when the program ended: nobody awaited it, so its result (or failure) never reached the program. Await every call, or Promise.all them, before returning",
            shown_call(first)
        ));
    }
    let returned_nothing = outcome
        .result
        .as_ref()
        .is_ok_and(|value| value.truncated.is_none() && value.json == "null");
    if returned_nothing && !(execution.calls.is_empty() && outcome.logs.is_empty()) {
        hints.push(
            "the result is null: the program made calls or logged, but returned nothing (or null). End it with `return value` to answer with what it found".into(),
        );
    }
    hints
}

/// A call as the program wrote it: `tools.ns.tool`, or `fetch`.
fn shown_call(tool: &str) -> String {
    if tool == crate::policy::FETCH {
        tool.to_string()
    } else {
        format!("tools.{tool}")
    }
}

fn logs_notice(cut: Truncation) -> String {
    let mut notice = format!(
        "logs cut at the output cap: kept {} of {}",
        human_bytes(cut.kept_bytes),
        human_bytes(cut.total_bytes)
    );
    if cut.dropped_entries > 0 {
        notice.push_str(&format!(
            "; {} later console calls dropped",
            cut.dropped_entries
        ));
    }
    notice.push_str("; log less, or return a summary instead");
    notice
}

fn result_notice(cut: Truncation) -> String {
    format!(
        "result cut at the result cap: its JSON text has {}, only the first {} are kept (as a string in `result`); return less: filter, paginate or summarise inside the program",
        human_bytes(cut.total_bytes),
        human_bytes(cut.kept_bytes)
    )
}
