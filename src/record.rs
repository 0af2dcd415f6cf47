//! The record of one execution: what it produced, the calls it made and what the policy
//! decided about each, and who asked. The executor fills it; the audit log, the oversight
//! (metrics, traces, anomaly flags), the console and the answers read it. It depends on
//! none of them, so none of them depends on another through it.

use std::time::Duration;

use schemars::JsonSchema;
use serde::{Deserialize, Serialize};

use crate::{
    preflight::Scan,
    sandbox::{ProgramError, RunOutcome},
};

/// What the policy and the budgets decided about one call.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Decision {
    /// No rule stopped it.
    Allowed,
    /// The user confirmed its tool before the program ran.
    ConfirmedBeforeRun,
    /// The user confirmed its tool for the rest of the execution, at an earlier call.
    ConfirmedEarlier,
    /// The user confirmed this call.
    ConfirmedByUser,
    /// The user confirmed this call and the tool's later ones.
    ConfirmedForExecution,
    /// Not made: the user declined, dismissed, or nobody answered in time.
    NotConfirmed,
    /// Not made: the policy asks for confirmation and nobody can be asked.
    NobodyToConfirm,
    /// Not made: the data-flow guard refused a sink after untrusted data was read.
    DataFlow,
    /// Not made: past the execution's call budget.
    Budget,
    /// Made, but its result was withheld: past the execution's received-bytes budget.
    ResultWithheld,
    /// Not made: past the budgets, and not listed one by one either.
    NotListed,
    /// Not made: the call itself was malformed (the glue's refusal).
    InvalidCall,
    /// Not made: no such tool.
    NoSuchTool,
    /// Not made: the arguments do not match the tool's schema.
    InvalidArguments,
    /// Not made: the tool's upstream is down.
    Unavailable,
    /// Not made: `fetch` is off (no egress rules).
    EgressOff,
    /// Not made: the egress rules refuse the URL.
    Egress,
    /// Made, but the program ended before its answer came.
    Abandoned,
    /// Not sent: the program ended before the call left the isolate.
    NotSent,
    /// Not made: past the principal's daily quota of tool calls or fetch bytes.
    Quota,
}

impl Decision {
    /// Every decision, for parsing.
    const ALL: [Decision; 20] = [
        Self::Allowed,
        Self::ConfirmedBeforeRun,
        Self::ConfirmedEarlier,
        Self::ConfirmedByUser,
        Self::ConfirmedForExecution,
        Self::NotConfirmed,
        Self::NobodyToConfirm,
        Self::DataFlow,
        Self::Budget,
        Self::ResultWithheld,
        Self::NotListed,
        Self::InvalidCall,
        Self::NoSuchTool,
        Self::InvalidArguments,
        Self::Unavailable,
        Self::EgressOff,
        Self::Egress,
        Self::Abandoned,
        Self::NotSent,
        Self::Quota,
    ];

    /// As the audit log, the metrics and the console write it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Allowed => "allowed",
            Self::ConfirmedBeforeRun => "confirmed before the run",
            Self::ConfirmedEarlier => "confirmed earlier in the execution",
            Self::ConfirmedByUser => "confirmed by the user",
            Self::ConfirmedForExecution => "confirmed for the execution",
            Self::NotConfirmed => "refused: not confirmed",
            Self::NobodyToConfirm => "refused: nobody to confirm",
            Self::DataFlow => "refused: data flow",
            Self::Budget => "refused: budget",
            Self::ResultWithheld => "result withheld: budget",
            Self::NotListed => "not listed: past the budgets",
            Self::InvalidCall => "refused: invalid call",
            Self::NoSuchTool => "refused: no such tool",
            Self::InvalidArguments => "refused: invalid arguments",
            Self::Unavailable => "refused: unavailable",
            Self::EgressOff => "refused: egress off",
            Self::Egress => "refused: egress",
            Self::Abandoned => "abandoned: the program ended first",
            Self::NotSent => "not sent: the program ended first",
            Self::Quota => "refused: quota",
        }
    }

    /// The decision an audit record names (`None` for a text no decision has).
    pub fn parse(text: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|d| d.as_str() == text)
    }

    /// Whether a rule, a budget or a check refused the call (it was not made).
    pub fn is_refusal(self) -> bool {
        matches!(
            self,
            Self::NotConfirmed
                | Self::NobodyToConfirm
                | Self::DataFlow
                | Self::Budget
                | Self::InvalidCall
                | Self::NoSuchTool
                | Self::InvalidArguments
                | Self::Unavailable
                | Self::EgressOff
                | Self::Egress
                | Self::Quota
        )
    }

    /// Whether the call went out to its tool (or its URL): what a bill counts.
    pub fn went_out(self) -> bool {
        matches!(
            self,
            Self::Allowed
                | Self::ConfirmedBeforeRun
                | Self::ConfirmedEarlier
                | Self::ConfirmedByUser
                | Self::ConfirmedForExecution
                | Self::ResultWithheld
                | Self::Abandoned
        )
    }

    /// Whether the policy (a rule, a confirmation, the data-flow guard, the egress rules)
    /// refused it, as opposed to a budget or a malformed call: what the `denied-burst`
    /// anomaly counts.
    pub fn is_policy_refusal(self) -> bool {
        matches!(
            self,
            Self::DataFlow
                | Self::NotConfirmed
                | Self::NobodyToConfirm
                | Self::NoSuchTool
                | Self::Egress
                | Self::EgressOff
        )
    }

    /// Whether the user was asked and said yes.
    pub fn is_confirmed(self) -> bool {
        matches!(
            self,
            Self::ConfirmedBeforeRun
                | Self::ConfirmedEarlier
                | Self::ConfirmedByUser
                | Self::ConfirmedForExecution
        )
    }
}

impl std::fmt::Display for Decision {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// One tool call of an execution, as listed in the reply.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, JsonSchema)]
pub struct CallRecord {
    /// `namespace.tool`, or `fetch`.
    pub tool: String,
    /// For a fetch: `METHOD URL` without the query.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
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
    /// What the policy and budgets decided (for the audit log, not the model).
    #[serde(skip)]
    pub decision: Decision,
}

/// What one execution cost, as its audit record keeps it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Cost {
    /// CPU time (user + system) of the isolate thread or worker process that ran it, in
    /// microseconds, as the kernel counted it; absent where nothing ran or it could not
    /// be read.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cpu_us: Option<u64>,
    /// Wall-clock time, queueing included, in milliseconds.
    pub wall_ms: u64,
    /// Most heap the isolate used at once, in bytes.
    pub heap_peak_bytes: u64,
    /// Tool calls that went out, by namespace (`fetch` is not among them).
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub tool_calls: std::collections::BTreeMap<String, u32>,
    /// Bytes sent: tool arguments and fetch requests, as JSON.
    pub bytes_out: u64,
    /// Bytes received: tool results and fetch responses, as JSON.
    pub bytes_in: u64,
    /// Fetch requests that went out.
    pub fetches: u32,
    /// Bytes of those fetches' requests and responses.
    pub egress_bytes: u64,
}

impl Cost {
    /// The CPU time, zero where unknown.
    pub fn cpu(&self) -> Duration {
        Duration::from_micros(self.cpu_us.unwrap_or(0))
    }

    /// Adds one call (or fetch) that went out, with the bytes of its arguments and result.
    pub fn add_call(&mut self, tool: &str, args_bytes: usize, result_bytes: usize) {
        let (out, back) = (args_bytes as u64, result_bytes as u64);
        self.bytes_out += out;
        self.bytes_in += back;
        if tool == crate::policy::FETCH {
            self.fetches += 1;
            self.egress_bytes += out + back;
        } else {
            let namespace = tool.split_once('.').map_or(tool, |(ns, _)| ns);
            *self.tool_calls.entry(namespace.to_string()).or_default() += 1;
        }
    }

    /// Tool calls that went out, in all.
    pub fn calls(&self) -> u64 {
        self.tool_calls.values().map(|&n| u64::from(n)).sum()
    }
}

/// The result of one execution.
#[derive(Debug, Clone)]
pub struct Execution {
    /// What the program produced.
    pub outcome: RunOutcome,
    /// Its tool calls, in the order they finished.
    pub calls: Vec<CallRecord>,
    /// Wall-clock time from the request to the outcome, queueing included.
    pub duration: Duration,
    /// What the pre-flight scan found, when the program parsed.
    pub scan: Option<Scan>,
}

impl Execution {
    /// What it cost.
    pub fn cost(&self) -> Cost {
        let mut cost = Cost {
            cpu_us: self
                .outcome
                .cpu
                .map(|cpu| u64::try_from(cpu.as_micros()).unwrap_or(u64::MAX)),
            wall_ms: u64::try_from(self.duration.as_millis()).unwrap_or(u64::MAX),
            heap_peak_bytes: self.outcome.heap_peak_bytes as u64,
            ..Cost::default()
        };
        for call in self.calls.iter().filter(|call| call.decision.went_out()) {
            cost.add_call(&call.tool, call.args_bytes, call.result_bytes);
        }
        cost
    }

    /// An execution that never ran, ended by `error` (e.g. `busy`).
    pub fn refused(error: ProgramError) -> Self {
        Self {
            outcome: RunOutcome::failed(error),
            calls: Vec::new(),
            duration: Duration::ZERO,
            scan: None,
        }
    }
}

/// Who ran an execution, and over what.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Origin {
    /// The MCP client, as `name/version`, when known.
    pub client: Option<String>,
    /// The session id (streamable HTTP, legacy SSE), when there is one.
    pub session: Option<String>,
    /// `stdio`, `http`, `sse`, `cli` (`codemode-mcp run`) or `library`.
    pub transport: String,
    /// Who asked: the name of the principal whose token the front door checked, `local`
    /// (or the configured name) for this process's client over stdio and `run`; none for
    /// an unauthenticated HTTP request or a library's own run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub principal: Option<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_decision_reads_back_and_the_refusals_are_the_refused_ones() {
        for decision in Decision::ALL {
            assert_eq!(Decision::parse(decision.as_str()), Some(decision));
            assert_eq!(
                decision.is_refusal(),
                decision.as_str().starts_with("refused"),
                "{decision}"
            );
            assert!(!decision.is_policy_refusal() || decision.is_refusal());
            assert!(!decision.is_confirmed() || !decision.is_refusal());
        }
        assert_eq!(Decision::parse("allowed "), None);
    }
}
