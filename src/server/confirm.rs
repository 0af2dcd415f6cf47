//! Confirmation of tool calls the policy marks `confirm`, asked of the human through MCP
//! elicitation (`elicitation/create`) when the client offers it.

use futures::future::BoxFuture;
use rmcp::{Peer, RoleServer, service::ElicitationError};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::policy::{ConfirmRequest, Confirmation, Confirmer};

/// What the user answers.
#[derive(Debug, Deserialize, JsonSchema)]
struct Approval {
    /// Also allow the later calls of this tool in this run of the program.
    #[serde(default)]
    for_rest_of_execution: bool,
}

rmcp::elicit_safe!(Approval);

/// Arguments shown to the user, at most this long.
const SHOWN_ARGUMENTS: usize = 2_000;

/// What the user is told of one call a running program is about to make: the tool, its
/// arguments (cut to [`SHOWN_ARGUMENTS`]), the program's line, and why they are asked.
/// Both ways of asking (elicitation, `input_required`) say it so.
pub(super) fn describe_call(request: &ConfirmRequest) -> String {
    let mut arguments = request.arguments.clone();
    if arguments.len() > SHOWN_ARGUMENTS {
        arguments.truncate(crate::sandbox::floor_char_boundary(
            &arguments,
            SHOWN_ARGUMENTS,
        ));
        arguments.push_str("...");
    }
    let at = request.site.map_or(String::new(), |site| {
        format!(" (line {} of the program)", site.line)
    });
    let mut message = if arguments.is_empty() {
        format!("A code-mode program{at} will call {}.", request.tool)
    } else {
        format!(
            "A code-mode program wants to call {}{at} with {arguments}.",
            request.tool
        )
    };
    if let Some(reason) = &request.reason {
        message.push_str(&format!(" Why you are asked: {reason}."));
    }
    message
}

/// Asks the client's user.
pub(super) struct ElicitingConfirmer {
    pub(super) peer: Peer<RoleServer>,
    /// A request of protocol 2026-07-28, which takes no server-to-client request (its
    /// questions go by `input_required` instead).
    pub(super) modern: bool,
    /// How long a question waits for the answer (`codemode.policy.approvalTimeoutMs`).
    pub(super) timeout: std::time::Duration,
}

/// Said where a modern client cannot be asked.
pub(super) const CANNOT_ASK_MODERN: &str =
    "this client cannot be asked (MCP 2026-07-28, and it declared no elicitation capability)";

impl Confirmer for ElicitingConfirmer {
    fn can_ask(&self) -> bool {
        !self.modern
            && self
                .peer
                .peer_info()
                .is_some_and(|info| info.capabilities.elicitation.is_some())
    }

    fn confirm(&self, request: ConfirmRequest) -> BoxFuture<'static, Confirmation> {
        let (peer, timeout) = (self.peer.clone(), self.timeout);
        if self.modern {
            let why = match &request.reason {
                Some(reason) => format!(
                    "{reason}; the data-flow guard asks the user to confirm such calls, and {CANNOT_ASK_MODERN}. Make the call in an execution that reads no untrusted data, or the user can mark the source trusted (dataFlow.notSources)"
                ),
                None => format!(
                    "the policy (codemode.policy) asks the user to confirm it, and {CANNOT_ASK_MODERN}. Run it from a client with elicitation, or the user can allow it in codemode.policy"
                ),
            };
            return Box::pin(std::future::ready(Confirmation::Denied(why)));
        }
        Box::pin(async move {
            let mut message = describe_call(&request);
            message.push_str(" Allow it?");
            let Ok(answer) = tokio::time::timeout(timeout, peer.elicit::<Approval>(message)).await
            else {
                return Confirmation::Denied(super::approvals::nobody_answered(timeout));
            };
            match answer {
                Ok(Some(approval)) if approval.for_rest_of_execution => Confirmation::ForExecution,
                Ok(_) => Confirmation::Once,
                Err(ElicitationError::UserDeclined) => Confirmation::Denied("the user declined it".into()),
                Err(ElicitationError::UserCancelled) => {
                    Confirmation::Denied("the user dismissed the confirmation".into())
                }
                Err(ElicitationError::CapabilityNotSupported) => Confirmation::Denied(match &request.reason {
                    Some(reason) => format!(
                        "{reason}; the data-flow guard (codemode.policy.dataFlow) asks the user to confirm such calls, and this client cannot ask (it does not support elicitation). Make the call in an execution that reads no untrusted data, or the user can mark the source trusted (dataFlow.notSources)"
                    ),
                    None => "the policy (codemode.policy) asks the user to confirm it, and this client cannot ask (it does not support elicitation). The user can allow the tool in codemode.policy".into(),
                }),
                Err(err) => Confirmation::Denied(format!("the confirmation failed: {err}")),
            }
        })
    }
}
