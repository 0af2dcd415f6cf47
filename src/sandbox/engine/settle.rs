//! What every engine does once its isolate has stopped: decide the kind of the failure from
//! host-side facts (never from a message the program could forge), map the error's
//! position to the agent's source, and cap the result.

use crate::sandbox::{
    CancelHandle, CancelReason, ErrorKind, Limits, ProgramError, ReturnValue, Truncation,
    cancel_message, glue, human_bytes, logs::floor_char_boundary, stack::agent_frames,
};

/// Why the host stopped the program.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    Timeout,
    Memory,
    Cancelled,
}

/// What the isolate produced, converted to Rust before the isolate is left.
pub(super) enum Settled {
    Value(String),
    /// The program (or the engine on its behalf) threw.
    Thrown(Thrown),
    /// The wrapped program did not compile.
    Syntax(Thrown),
}

/// A thrown value as the host read it.
pub(super) struct Thrown {
    pub(super) name: Option<String>,
    pub(super) message: String,
    pub(super) stack: Option<String>,
}

/// What the glue reported through its host functions while the program ended.
#[derive(Default)]
pub(super) struct GlueReports {
    /// The returned value could not become JSON (`outputError`).
    pub(super) output_error: Option<String>,
    /// The program ended with a ToolError the glue raised: (tool, schema path).
    pub(super) tool_error: Option<(String, Option<String>)>,
}

/// Failed calls nobody awaited that a run reports, at most.
const MAX_UNAWAITED: usize = 5;
/// Characters of one such report kept.
const UNAWAITED_CHARS: usize = 1_000;

/// Keeps the glue's report of a failed call nobody awaited, within bounds: the glue sends
/// a few, but what crosses from the isolate is capped here too.
pub(super) fn keep_unawaited(kept: &mut Vec<String>, text: &str) {
    if kept.len() < MAX_UNAWAITED {
        kept.push(text.chars().take(UNAWAITED_CHARS).collect());
    }
}

/// The program's result from what stopped it (`stop`, decided by the host), what the
/// isolate produced (`None` when the engine stopped it uncatchably) and what the glue
/// reported.
pub(super) fn result_of(
    stop: Option<Stop>,
    settled: Option<Settled>,
    reports: GlueReports,
    limits: &Limits,
    cancel: &CancelHandle,
    program_lines: u32,
) -> Result<ReturnValue, ProgramError> {
    match (stop, settled) {
        (Some(Stop::Memory), _) => Err(ProgramError::new(
            ErrorKind::Memory,
            format!(
                "the program used more than the heap cap of {} and was stopped; work on smaller pieces of data, or return less",
                human_bytes(limits.heap_bytes)
            ),
        )),
        (Some(Stop::Timeout), _) => Err(ProgramError::new(
            ErrorKind::Timeout,
            format!(
                "the program ran longer than its time limit of {} ms and was stopped; look for endless loops, or do less per execution",
                limits.timeout.as_millis()
            ),
        )),
        (Some(Stop::Cancelled), _) => Err(ProgramError::new(
            ErrorKind::Cancelled,
            cancel_message(cancel.reason().unwrap_or(CancelReason::Client)),
        )),
        (None, None) => Err(ProgramError::new(
            ErrorKind::Timeout,
            "the program was stopped at its time limit",
        )),
        (None, Some(Settled::Value(json))) => Ok(cap_result(json, limits.result_bytes)),
        (None, Some(Settled::Syntax(thrown))) => {
            Err(positioned(ErrorKind::Syntax, thrown, program_lines))
        }
        (None, Some(Settled::Thrown(thrown))) => match reports {
            GlueReports {
                output_error: Some(message),
                ..
            } => Err(ProgramError::new(ErrorKind::Output, message)),
            GlueReports {
                tool_error: Some((tool, schema_path)),
                ..
            } => {
                let mut error = positioned(ErrorKind::Tool, thrown, program_lines);
                error.tool = Some(tool);
                error.schema_path = schema_path;
                Err(error)
            }
            _ => Err(positioned(ErrorKind::Runtime, thrown, program_lines)),
        },
    }
}

/// A thrown error at its position in the agent's source, with the agent's frames only.
fn positioned(kind: ErrorKind, thrown: Thrown, program_lines: u32) -> ProgramError {
    let (frames, position) = thrown
        .stack
        .as_deref()
        .map(|stack| agent_frames(stack, program_lines))
        .unwrap_or_default();
    let mut message = match thrown.name {
        Some(name) if !name.is_empty() => format!("{name}: {}", thrown.message),
        _ => thrown.message,
    };
    if message.starts_with("ReferenceError:") && message.ends_with("is not defined") {
        message.push_str(&format!(
            ". Besides the standard JavaScript built-ins the program has: {}. It has no {}.",
            glue::PROGRAM_GLOBALS.join(", "),
            glue::NOT_AVAILABLE
        ));
    }
    ProgramError {
        kind,
        message: capped(message),
        position,
        stack: (!frames.is_empty()).then(|| capped(frames.join("\n"))),
        tool: None,
        schema_path: None,
    }
}

/// Bytes of an error's message or stack kept: a program that throws a 40 MB message gets
/// an answer of a few KiB, not one that takes minutes to reach its client.
pub(crate) const ERROR_TEXT_BYTES: usize = 8 << 10;

/// `text` cut to [`ERROR_TEXT_BYTES`], its head kept, with how much was cut.
fn capped(text: String) -> String {
    if text.len() <= ERROR_TEXT_BYTES {
        return text;
    }
    let kept = floor_char_boundary(&text, ERROR_TEXT_BYTES);
    format!(
        "{} [... {} more bytes cut: error texts are kept to {} KiB]",
        &text[..kept],
        text.len() - kept,
        ERROR_TEXT_BYTES >> 10
    )
}

fn cap_result(json: String, cap: usize) -> ReturnValue {
    if json.len() <= cap {
        return ReturnValue {
            json,
            truncated: None,
        };
    }
    let kept = floor_char_boundary(&json, cap);
    ReturnValue {
        truncated: Some(Truncation {
            total_bytes: json.len(),
            kept_bytes: kept,
            dropped_entries: 0,
        }),
        json: json[..kept].to_string(),
    }
}
