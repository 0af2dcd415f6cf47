//! The execution's budgets on calls and fetches: counted before a call goes anywhere,
//! refused (and recorded) past them.

use std::{sync::atomic::Ordering, time::Instant};

use super::{CallHost, fail};
use crate::{
    record::Decision,
    sandbox::{ReplyFuture, human_bytes},
};

impl CallHost {
    /// The setting a limit of this execution comes from: its principal's overlay when
    /// one set it, else the server's `default`.
    fn source_of(&self, key: &str, effective: u64, default: &str) -> String {
        self.tenancy
            .limit_source(key, effective)
            .unwrap_or_else(|| default.to_string())
    }

    /// Counts a tool call against the execution's budgets: its calls, then (for a call the
    /// glue did not refuse, which names a `tool`) that tool's calls and the bytes received
    /// so far. Past one: why, for the refusal.
    pub(super) fn count_call(&self, tool: Option<&str>) -> Result<(), String> {
        if self.made.fetch_add(1, Ordering::SeqCst) >= self.limits.tool_calls {
            return Err(format!(
                "this execution has made its {} tool calls, the most one may ({})",
                self.limits.tool_calls,
                self.source_of(
                    "toolCalls",
                    u64::from(self.limits.tool_calls),
                    "--max-tool-calls"
                )
            ));
        }
        let Some(tool) = tool else {
            return Ok(());
        };
        let this_tool = self.made_per_tool.lock().map_or(0, |mut made| {
            let count = made.entry(tool.to_string()).or_insert(0);
            *count += 1;
            *count
        });
        if this_tool > self.limits.calls_per_tool {
            return Err(format!(
                "this execution has called it {} times, the most one may call one tool ({})",
                self.limits.calls_per_tool,
                self.source_of(
                    "callsPerTool",
                    u64::from(self.limits.calls_per_tool),
                    "--max-calls-per-tool"
                )
            ));
        }
        if self.received.load(Ordering::SeqCst) > self.limits.received_bytes {
            return Err(format!(
                "this execution has received more than {} of tool results, the most one may (--max-received-kib)",
                human_bytes(self.limits.received_bytes)
            ));
        }
        Ok(())
    }

    /// Counts a fetch against the execution's budgets; past one, the whole refusal.
    pub(super) fn count_fetch(&self) -> Result<(), String> {
        if let Some(meter) = &self.meter {
            meter.fetch_allowed()?;
        }
        if self.fetched.fetch_add(1, Ordering::SeqCst) >= self.limits.fetches {
            return Err(format!(
                "fetch was not made: this execution has made its {} fetches, the most one may ({}). Fetch fewer URLs per execution, or split the task over several",
                self.limits.fetches,
                self.source_of(
                    "fetches",
                    u64::from(self.limits.fetches),
                    "codemode.limits.fetches"
                )
            ));
        }
        if self.received.load(Ordering::SeqCst) > self.limits.received_bytes {
            return Err(format!(
                "fetch was not made: this execution has received more than {} of tool results and responses, the most one may (--max-received-kib)",
                human_bytes(self.limits.received_bytes)
            ));
        }
        Ok(())
    }

    /// Refuses a call for a budget.
    pub(super) fn refuse_budget(
        &self,
        name: &str,
        target: Option<String>,
        started: Instant,
        args_bytes: usize,
        message: String,
    ) -> ReplyFuture {
        // Once a quota refused a call, every later one is refused by it too.
        let decision = if self.over_quota().is_some() {
            Decision::Quota
        } else {
            self.over_budget.store(true, Ordering::SeqCst);
            Decision::Budget
        };
        let reply = fail(message, None);
        self.recorder
            .record(name, target, started, args_bytes, decision, &reply, None);
        Box::pin(std::future::ready(reply))
    }
}
