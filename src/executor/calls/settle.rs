//! What a call that left the gate still has to do once it is answered.

use std::{
    collections::HashSet,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Instant,
};

use super::{
    CallHost, fail,
    gate::Gate,
    record::{InFlightCall, Recorder},
};
use crate::{
    oversight::CallSpan,
    policy::Confirmation,
    record::Decision,
    sandbox::{ToolReply, human_bytes},
};

impl CallHost {
    /// What a call that passed the gate still has to do once answered.
    pub(super) fn settlement(
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
}

/// What a call (or fetch) that left the gate still has to do once it is answered: wait for
/// the user's word, count its result against the byte budget, mark the execution if it read
/// an untrusted source, and record itself. Owned, so it moves into the call's task.
pub(super) struct Settlement {
    /// Its entry among the run's calls in flight.
    pub(super) id: u64,
    pub(super) recorder: Recorder,
    pub(super) approved: Arc<Mutex<HashSet<String>>>,
    pub(super) tainted: crate::catalog::Taint,
    pub(super) received: Arc<AtomicUsize>,
    pub(super) received_budget: usize,
    pub(super) over_budget: Arc<AtomicBool>,
    /// Whether its result is untrusted (the data-flow guard).
    pub(super) is_source: bool,
    /// `namespace.tool`, or `fetch`: the record's name and the key of approvals.
    pub(super) name: String,
    /// For a fetch: `METHOD URL`.
    pub(super) target: Option<String>,
    pub(super) shown_as: String,
    pub(super) started: Instant,
    pub(super) args_bytes: usize,
    /// The call's live span, ended when it is recorded.
    pub(super) span: Mutex<Option<CallSpan>>,
}

impl Settlement {
    /// Waits for the user's word on a gated call: the decision, or the refusal (recorded).
    pub(super) async fn confirm(&self, gate: Gate) -> Result<Decision, ToolReply> {
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
    pub(super) fn finish(self, reply: ToolReply, decision: Decision) -> ToolReply {
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

    pub(super) fn record(&self, decision: Decision, reply: &ToolReply) {
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
    pub(super) fn start_span(&self) -> Option<String> {
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
