//! A call that passed the gate goes out: to its builtin or its upstream, on the server's
//! runtime, and is settled when answered.

use super::{
    AbortOnDrop, CallHost, fail,
    gate::Gate,
    lookup::{Found, Target},
    program_value,
    settle::Settlement,
};
use crate::sandbox::{ReplyFuture, ToolReply};

impl CallHost {
    /// Sends a call that passed the gate, once the user's word (if asked) allows it, to
    /// its builtin or upstream on the server's runtime, and settles it when answered.
    pub(super) fn dispatch(&self, found: Found, gate: Gate, settlement: Settlement) -> ReplyFuture {
        let Found {
            tool,
            arguments,
            target,
        } = found;
        let caller = crate::catalog::Caller {
            session: self.session.clone(),
            principal: self.principal.clone(),
            depth: self.depth,
            taint: self.tainted.clone(),
            state_used: self.state_used.clone(),
            tenancy: self.tenancy.clone(),
            quota_key: self.quota_key.clone(),
            meter: self.meter.clone(),
        };
        let task = self.runtime.spawn(async move {
            let traceparent = settlement.start_span();
            let decision = match settlement.confirm(gate).await {
                Ok(decision) => decision,
                Err(reply) => return reply,
            };
            let shown_as = &settlement.shown_as;
            let reply = match target {
                Target::Builtin(handler) => {
                    match crate::catalog::on_behalf_of(caller, handler(arguments)).await {
                        Ok(value) => ToolReply::Ok(value.to_string()),
                        Err(message) => fail(format!("{shown_as} failed: {message}"), None),
                    }
                }
                Target::Upstream(upstream, name) => {
                    match upstream
                        .call(&name, arguments, caller.depth, traceparent)
                        .await
                    {
                        Ok(result) => match program_value(result) {
                            Ok(value) => {
                                tool.observe_result(&value);
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
}
