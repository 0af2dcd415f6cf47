//! The gate: every decision about a call a program makes, in one place. Before the program
//! runs, it reads the tools the program names (a denied one refuses the program; those
//! that need the user's word are asked about up front, in one question). At each call, it
//! weighs what the policy says of the tool (its rule, whether it is a data-flow sink)
//! against what this execution has done (read untrusted data, approvals the user gave)
//! and whether anyone can be asked: the call goes out, is asked about first, or is
//! refused, and the [`Decision`] is what the record says. Which tools the catalog shows
//! is the policy's too ([`super::Policy::access`]); budgets, lookups and arguments are the
//! executor's, before the gate.

use std::collections::HashSet;

use super::{Access, DataFlowMode};
use crate::{preflight::Reference, record::Decision};

/// Why the user approved something for the rest of the execution.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Approval {
    /// The tool's own `confirm` rule, at a call.
    Rule,
    /// The data-flow guard.
    DataFlow,
    /// The tool's own `confirm` rule, asked before the program ran.
    UpFront,
}

impl Approval {
    /// How the approval of `name` is kept among the execution's approvals.
    pub fn key(self, name: &str) -> String {
        match self {
            Self::Rule => name.to_string(),
            Self::DataFlow => format!("data flow: {name}"),
            Self::UpFront => format!("before the run: {name}"),
        }
    }
}

/// A call about to go out, as the gate sees it.
#[derive(Debug, Clone)]
pub struct Call<'a> {
    /// `namespace.tool`, or `fetch`: the key of approvals.
    pub name: &'a str,
    /// How messages name it: `tools.ns.tool`, `fetch GET url`.
    pub shown_as: &'a str,
    /// Whether the tool's own rule asks for confirmation.
    pub needs_rule: bool,
    /// Whether it can send data out (a data-flow sink).
    pub sink: bool,
    /// The rule that would allow it, for the refusal's message.
    pub allow_rule: Option<String>,
}

/// What the execution making the call has done, as the gate reads it.
#[derive(Debug, Clone, Copy)]
pub struct Run<'a> {
    /// The approvals the user gave, by [`Approval::key`].
    pub approved: &'a HashSet<String>,
    /// The untrusted source the execution has read from, once it has.
    pub tainted_by: Option<&'a str>,
    /// What the data-flow guard does with a sink call once untrusted data was read.
    pub data_flow: DataFlowMode,
    /// Whether anyone can be asked.
    pub can_ask: bool,
}

/// The gate's word on a call.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// The call goes out now.
    Go(Decision),
    /// The user is asked first.
    Ask {
        /// What approving for the rest of the execution records.
        approvals: Vec<Approval>,
        /// Why, beyond the tool's own rule (the data-flow guard's reason).
        reason: Option<String>,
    },
    /// Not made: the decision for the record and what the program is told.
    Refuse(Decision, String),
}

/// Decides one call.
pub fn decide(call: &Call<'_>, run: &Run<'_>) -> Verdict {
    let approved = |approval: Approval| run.approved.contains(&approval.key(call.name));
    let shown_as = call.shown_as;
    let mut approvals = Vec::new();
    let mut reasons = Vec::new();
    let up_front = call.needs_rule && approved(Approval::UpFront);
    if call.needs_rule && !up_front && !approved(Approval::Rule) {
        approvals.push(Approval::Rule);
    }
    if let (true, Some(source)) = (
        call.sink && run.data_flow != DataFlowMode::Off,
        run.tainted_by,
    ) && !approved(Approval::DataFlow)
    {
        let why = format!(
            "this execution has read untrusted data (from {source}), and {shown_as} can send data out"
        );
        if run.data_flow == DataFlowMode::Deny {
            return Verdict::Refuse(
                Decision::DataFlow,
                format!(
                    "{shown_as} was not called: {why}; the data-flow guard (codemode.policy.dataFlow) refuses such calls. Make the call in an execution that reads no untrusted data, or ask the user to mark the source as trusted (dataFlow.notSources)"
                ),
            );
        }
        reasons.push(why);
        approvals.push(Approval::DataFlow);
    }
    if approvals.is_empty() {
        return Verdict::Go(if up_front {
            Decision::ConfirmedBeforeRun
        } else if call.needs_rule {
            Decision::ConfirmedEarlier
        } else {
            Decision::Allowed
        });
    }
    if !run.can_ask {
        let rule = call.allow_rule.as_ref().map_or(String::new(), |rule| {
            format!(". The user can allow it with the rule {rule}")
        });
        let why = if reasons.is_empty() {
            format!(
                "the policy (codemode.policy) asks the user to confirm it, and nobody can be asked here{rule}"
            )
        } else {
            format!(
                "{}; the data-flow guard (codemode.policy.dataFlow) asks the user to confirm such calls, and nobody can be asked here",
                reasons.join("; ")
            )
        };
        return Verdict::Refuse(
            Decision::NobodyToConfirm,
            format!("{shown_as} was not called: {why}"),
        );
    }
    Verdict::Ask {
        approvals,
        reason: (!reasons.is_empty()).then(|| reasons.join("; ")),
    }
}

/// What the policy says of a tool a program names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Named {
    /// The policy denies it (the catalog does not show it).
    Denied,
    /// It is in the catalog with this access.
    Shown(Access),
    /// No such tool: the call will say so.
    Unknown,
}

/// The gate's word on a program before it runs, from the tools it names (`named`, each
/// `namespace.tool`, read by `access`): the first denied one refuses the program (its
/// reference and the message), else those to confirm up front, in their order.
pub fn before_run(
    named: &[Reference],
    access: impl Fn(&str, &str) -> Named,
) -> Result<Vec<&Reference>, (&Reference, String)> {
    let of = |reference: &Reference| {
        reference
            .name
            .split_once('.')
            .map_or(Named::Unknown, |(namespace, tool)| access(namespace, tool))
    };
    if let Some(denied) = named.iter().find(|r| of(r) == Named::Denied) {
        return Err((
            denied,
            format!(
                "nothing ran: line {} calls tools.{}, which the policy (codemode.policy) denies. Do the task without it, or ask the user to allow it",
                denied.position.line, denied.name
            ),
        ));
    }
    Ok(named
        .iter()
        .filter(|r| of(r) == Named::Shown(Access::Confirm))
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transpile::Position;

    fn call(needs_rule: bool, sink: bool) -> Call<'static> {
        Call {
            name: "gh.push",
            shown_as: "tools.gh.push",
            needs_rule,
            sink,
            allow_rule: Some("{\"tools\": \"gh.push\", \"action\": \"allow\"}".into()),
        }
    }

    fn run<'a>(
        approved: &'a HashSet<String>,
        tainted_by: Option<&'static str>,
        data_flow: DataFlowMode,
        can_ask: bool,
    ) -> Run<'a> {
        Run {
            approved,
            tainted_by,
            data_flow,
            can_ask,
        }
    }

    #[test]
    fn a_plain_call_goes_and_a_confirmed_tool_is_asked_about_once() {
        let none = HashSet::new();
        let mode = DataFlowMode::Confirm;
        assert_eq!(
            decide(&call(false, false), &run(&none, None, mode, true)),
            Verdict::Go(Decision::Allowed)
        );
        assert_eq!(
            decide(&call(true, false), &run(&none, None, mode, true)),
            Verdict::Ask {
                approvals: vec![Approval::Rule],
                reason: None
            }
        );
        let earlier: HashSet<_> = [Approval::Rule.key("gh.push")].into();
        assert_eq!(
            decide(&call(true, false), &run(&earlier, None, mode, true)),
            Verdict::Go(Decision::ConfirmedEarlier)
        );
        let up_front: HashSet<_> = [Approval::UpFront.key("gh.push")].into();
        assert_eq!(
            decide(&call(true, false), &run(&up_front, None, mode, true)),
            Verdict::Go(Decision::ConfirmedBeforeRun)
        );
        let Verdict::Refuse(decision, message) =
            decide(&call(true, false), &run(&none, None, mode, false))
        else {
            panic!("nobody to ask")
        };
        assert_eq!(decision, Decision::NobodyToConfirm);
        assert!(message.contains("\"action\": \"allow\""), "{message}");
    }

    #[test]
    fn a_sink_after_untrusted_data_is_asked_about_or_refused_by_the_mode() {
        let none = HashSet::new();
        let source = Some("web.get");
        assert_eq!(
            decide(
                &call(false, true),
                &run(&none, None, DataFlowMode::Deny, true)
            ),
            Verdict::Go(Decision::Allowed),
            "nothing untrusted read yet"
        );
        assert_eq!(
            decide(
                &call(false, true),
                &run(&none, source, DataFlowMode::Off, true)
            ),
            Verdict::Go(Decision::Allowed)
        );
        let Verdict::Refuse(decision, _) = decide(
            &call(false, true),
            &run(&none, source, DataFlowMode::Deny, true),
        ) else {
            panic!("denied")
        };
        assert_eq!(decision, Decision::DataFlow);
        let Verdict::Ask { approvals, reason } = decide(
            &call(true, true),
            &run(&none, source, DataFlowMode::Confirm, true),
        ) else {
            panic!("asked")
        };
        assert_eq!(approvals, [Approval::Rule, Approval::DataFlow]);
        assert!(reason.is_some_and(|r| r.contains("web.get")));
        let approved: HashSet<_> = [Approval::DataFlow.key("gh.push")].into();
        assert_eq!(
            decide(
                &call(false, true),
                &run(&approved, source, DataFlowMode::Confirm, false)
            ),
            Verdict::Go(Decision::Allowed)
        );
    }

    #[test]
    fn before_the_run_a_denied_name_refuses_and_confirmed_ones_are_listed() {
        let at = |line| Position { line, column: 1 };
        let named = [
            Reference {
                name: "gh.read".into(),
                position: at(1),
            },
            Reference {
                name: "gh.push".into(),
                position: at(2),
            },
            Reference {
                name: "gh.wipe".into(),
                position: at(3),
            },
        ];
        let access = |_: &str, tool: &str| match tool {
            "push" => Named::Shown(Access::Confirm),
            "wipe" => Named::Denied,
            _ => Named::Shown(Access::Allow),
        };
        let (denied, message) = before_run(&named, access).unwrap_err();
        assert_eq!(denied.name, "gh.wipe");
        assert!(message.contains("line 3"), "{message}");
        let confirm = before_run(&named[..2], access).unwrap();
        assert_eq!(confirm.len(), 1);
        assert_eq!(confirm[0].name, "gh.push");
    }
}
