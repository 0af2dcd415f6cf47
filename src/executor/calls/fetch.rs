//! `fetch` from a program: counted, asked about at the gate like a tool call, answered by
//! the egress rules.

use std::time::Instant;

use super::{AbortOnDrop, CallHost, fail, gate::Pending};
use crate::{
    egress::FetchRequest,
    policy::FETCH,
    record::Decision,
    sandbox::{ReplyFuture, ToolReply},
};

impl CallHost {
    pub(super) fn fetch_through_egress(&self, request: String) -> ReplyFuture {
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
        let Some(egress) = self.egress.clone().filter(|_| self.tenancy.may_fetch()) else {
            return immediate(
                Some(target),
                Decision::EgressOff,
                fail(
                    if self.egress.is_some() {
                        "fetch is off for this principal (its codemode.tenants overlay allows no URLs)"
                    } else {
                        "fetch is off: the server allows no URLs (codemode.egress.rules)"
                    }
                    .into(),
                    None,
                ),
            );
        };
        if let Err(message) = self.count_fetch() {
            return self.refuse_budget(FETCH, Some(target), started, args_bytes, message);
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
        let tenancy = self.tenancy.clone();
        let meter = self.meter.clone();
        let task = self.runtime.spawn(async move {
            // Third-party URLs get no trace context.
            let _ = settlement.start_span();
            let decision = match settlement.confirm(gate).await {
                Ok(decision) => decision,
                Err(reply) => return reply,
            };
            let (reply, decision) = match egress.fetch(request, tenancy.egress()).await {
                Ok(response) => match serde_json::to_string(&response) {
                    Ok(json) => {
                        if let Some(meter) = &meter {
                            meter.add_egress((args_bytes + json.len()) as u64);
                        }
                        (ToolReply::Ok(json), decision)
                    }
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
