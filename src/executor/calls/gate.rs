//! The bridge from a call to the policy's gate ([`crate::policy::gate`]): what the gate
//! is told of the call and the run, and, where it says ask, the question to the user, with
//! the run's clock held while it waits.

use futures::future::BoxFuture;

use super::CallHost;
use crate::{
    policy::{
        ConfirmRequest, Confirmation, Flow,
        gate::{self, Approval, Verdict},
    },
    record::Decision,
    sandbox::RunClock,
    transpile::Position,
};

/// A call (or fetch) about to go out, as the gate sees it.
pub(super) struct Pending<'a> {
    /// `namespace.tool`, or `fetch`: the key of approvals.
    pub(super) name: &'a str,
    /// How messages name it: `tools.ns.tool`, `fetch GET url`.
    pub(super) shown_as: &'a str,
    /// Its arguments, shown to the user.
    pub(super) arguments: &'a str,
    /// The program's line that makes it.
    pub(super) site: Option<Position>,
    /// Whether the tool's own rule asks for confirmation.
    pub(super) needs_rule: bool,
    pub(super) flow: Flow,
    /// The rule that would allow it, for the refusal message.
    pub(super) allow_rule: Option<String>,
}

/// What must happen before a call goes out.
pub(super) struct Gate {
    pub(super) confirmation: Option<(BoxFuture<'static, Confirmation>, Vec<Approval>)>,
    pub(super) decision: Decision,
}

impl CallHost {
    /// Asks the policy's gate about a call: it goes out now, or after the user's word, or
    /// not at all (then the decision for the record and the refusal message).
    pub(super) fn gate(&self, call: Pending<'_>) -> Result<Gate, (Decision, String)> {
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
