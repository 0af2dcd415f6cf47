//! Confirmations for clients of protocol 2026-07-28, which take no server-to-client
//! requests: a run that needs the user's word before it starts is answered with an
//! `input_required` result (SEP-2322) carrying the question and a `requestState`; the
//! client asks its user and sends the same call again with the answer and that state.
//!
//! The state is a random handle (244 bits) to what is kept here: the program's hash, its
//! owner, the tools asked about and an expiry. It is used once; a changed, replayed,
//! expired or foreign one, or one from before a restart, resumes nothing. A confirmation a
//! program reaches mid-run cannot be asked this way yet (the run would have to be parked),
//! and is refused, saying how to have it asked before the run.

use std::{
    collections::HashMap,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use futures::future::BoxFuture;
use rmcp::model::{
    ElicitRequest, ElicitRequestParams, ElicitationSchema, InputRequest, InputRequests,
    InputRequiredResult,
};

use crate::digest;
use crate::policy::{ConfirmRequest, Confirmation, Confirmer};

/// How long a question waits for its answer.
pub(super) const APPROVAL_TTL: Duration = Duration::from_secs(300);
/// Questions waiting at once; past it the oldest are forgotten.
const MAX_PENDING: usize = 4096;
/// The key of the one input request.
const KEY: &str = "confirm";

/// A question asked, waiting for the client's retry.
struct Pending {
    code_sha: String,
    owner: String,
    tools: String,
    asked: Instant,
}

static PENDING: std::sync::LazyLock<Mutex<HashMap<String, Pending>>> =
    std::sync::LazyLock::new(Mutex::default);

fn code_sha(code: &str) -> String {
    digest::sha256_hex(code.as_bytes())
}

/// The `input_required` result asking `request` (a run's up-front confirmation) of the
/// user of `owner`, for the program `code`.
pub(super) fn ask(request: &ConfirmRequest, code: &str, owner: &str) -> InputRequiredResult {
    let state = format!(
        "cma_{}",
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            digest::random_bytes::<32>()
        )
    );
    {
        let mut pending = PENDING.lock().unwrap_or_else(|e| e.into_inner());
        pending.retain(|_, p| p.asked.elapsed() < APPROVAL_TTL);
        let full = if pending.len() >= MAX_PENDING {
            crate::state::oldest_of_heaviest_owner(
                pending.iter().map(|(k, p)| (k, p.owner.as_str(), p.asked)),
            )
        } else {
            None
        };
        if let Some(oldest) = full {
            pending.remove(&oldest);
        }
        pending.insert(
            state.clone(),
            Pending {
                code_sha: code_sha(code),
                owner: owner.to_string(),
                tools: request.tool.clone(),
                asked: Instant::now(),
            },
        );
    }
    let at = request.site.map_or(String::new(), |site| {
        format!(" (first at line {} of the program)", site.line)
    });
    let message = format!(
        "A code-mode program{at} will call {}, which the policy asks you to confirm. Allow them for this run of the program?",
        request.tool
    );
    let schema = ElicitationSchema::builder()
        .required_bool_with(KEY, |b| b.title("Allow these calls?"))
        .build();
    let mut requests = InputRequests::new();
    if let Ok(schema) = schema {
        requests.insert(
            KEY.into(),
            InputRequest::Elicitation(ElicitRequest::new(
                ElicitRequestParams::FormElicitationParams {
                    meta: None,
                    message,
                    requested_schema: schema,
                },
            )),
        );
    }
    InputRequiredResult::new(Some(requests), Some(state))
}

/// What the retry answered for the run of `code` by `owner`: the tools asked about and the
/// user's word, or why the state resumes nothing.
pub(super) fn answer(
    state: &str,
    responses: Option<&rmcp::model::InputResponses>,
    code: &str,
    owner: &str,
) -> Result<(String, Confirmation), String> {
    const AGAIN: &str = "Run the program again (without requestState) to be asked anew";
    // Checked before it is used up: a wrong program or client must not spend the question
    // another retry may still answer.
    let pending = {
        let mut waiting = PENDING.lock().unwrap_or_else(|e| e.into_inner());
        match waiting.get(state) {
            None => None,
            Some(p) if p.owner != owner || p.code_sha != code_sha(code) => {
                return Err(format!(
                    "nothing ran: this requestState was asked for another program or another client. {AGAIN}"
                ));
            }
            Some(_) => waiting.remove(state),
        }
    };
    let Some(pending) = pending else {
        return Err(format!(
            "nothing ran: this requestState names no question waiting here (it was answered already, it is not one this server asked, or the server restarted since). {AGAIN}"
        ));
    };
    if pending.asked.elapsed() >= APPROVAL_TTL {
        return Err(format!(
            "nothing ran: the question expired ({} s without an answer). {AGAIN}",
            APPROVAL_TTL.as_secs()
        ));
    }
    let reply = responses.and_then(|r| r.get(KEY));
    let action = reply.and_then(|r| r.get("action")).and_then(|a| a.as_str());
    let allowed = reply
        .and_then(|r| r.get("content"))
        .and_then(|c| c.get(KEY))
        .and_then(serde_json::Value::as_bool);
    let word = match (action, allowed) {
        (Some("accept"), Some(true)) => Confirmation::ForExecution,
        (Some("accept"), Some(false)) | (Some("decline"), _) => {
            Confirmation::Denied("the user declined it".into())
        }
        (Some("accept"), None) => Confirmation::Denied(
            "the answer carried no `confirm` value, so nothing is taken as approved".into(),
        ),
        (Some("cancel"), _) => Confirmation::Denied("the user dismissed the confirmation".into()),
        _ => Confirmation::Denied(
            "the retry carried no answer to the confirmation (inputResponses.confirm)".into(),
        ),
    };
    Ok((pending.tools, word))
}

/// The confirmer of a modern request: before the run, it notes the question (to be asked
/// by `input_required`) or gives the answer the retry carried; mid-run, it refuses.
pub(super) struct AnsweringConfirmer {
    /// The answer a retry carried: the tools asked about and the user's word.
    pub(super) answered: Option<(String, Confirmation)>,
    /// The question of the first leg, to ask.
    pub(super) asked: Arc<Mutex<Option<ConfirmRequest>>>,
}

/// Said of a confirmation reached mid-run on a modern request.
const MID_RUN: &str = "the policy asks the user to confirm it mid-run, which this client (MCP 2026-07-28, no server-to-client requests) cannot be asked yet. Call the tool by its literal name (tools.ns.tool(...)) so that it is confirmed before the program runs, or the user can allow it in codemode.policy";

impl Confirmer for AnsweringConfirmer {
    fn can_ask(&self) -> bool {
        true
    }

    fn confirm(&self, request: ConfirmRequest) -> BoxFuture<'static, Confirmation> {
        let word = if !request.before_run {
            Confirmation::Denied(match &request.reason {
                // The data-flow guard's question only arises mid-run: naming the tool
                // cannot move it up front.
                Some(reason) => format!(
                    "{reason}; the data-flow guard asks the user to confirm such calls, and {}. Make the call in an execution that reads no untrusted data, or the user can mark the source trusted (dataFlow.notSources)",
                    super::confirm::CANNOT_ASK_MODERN
                ),
                None => MID_RUN.to_string(),
            })
        } else {
            match &self.answered {
                Some((tools, word)) if *tools == request.tool => word.clone(),
                Some(_) => {
                    Confirmation::Denied("the answer the retry carried was for other tools".into())
                }
                None => {
                    *self.asked.lock().unwrap_or_else(|e| e.into_inner()) = Some(request);
                    Confirmation::Denied(ASKING.into())
                }
            }
        };
        Box::pin(std::future::ready(word))
    }
}

/// The refusal of a first leg, replaced by the `input_required` result.
pub(super) const ASKING: &str = "the user is being asked";

#[cfg(test)]
mod tests {
    use super::*;

    fn request() -> ConfirmRequest {
        ConfirmRequest {
            tool: "tools.toy.add".into(),
            arguments: String::new(),
            site: None,
            reason: None,
            before_run: true,
        }
    }

    fn yes() -> rmcp::model::InputResponses {
        [(
            KEY.to_string(),
            serde_json::json!({"action": "accept", "content": {"confirm": true}}),
        )]
        .into()
    }

    #[test]
    fn a_state_resumes_once_for_its_program_and_owner_only() {
        let asked = ask(&request(), "return 1", "alice");
        let state = asked.request_state.clone().unwrap();
        assert!(
            answer(&state, Some(&yes()), "return 2", "alice").is_err(),
            "another program"
        );
        let asked = ask(&request(), "return 1", "alice");
        let state = asked.request_state.clone().unwrap();
        assert!(
            answer(&state, Some(&yes()), "return 1", "bob").is_err(),
            "another owner"
        );
        let state = ask(&request(), "return 1", "alice").request_state.unwrap();
        let (tools, word) = answer(&state, Some(&yes()), "return 1", "alice").unwrap();
        assert_eq!(
            (tools.as_str(), word),
            ("tools.toy.add", Confirmation::ForExecution)
        );
        assert!(
            answer(&state, Some(&yes()), "return 1", "alice").is_err(),
            "used once"
        );
        let changed = format!("{}x", &state[..state.len() - 1]);
        assert!(
            answer(&changed, Some(&yes()), "return 1", "alice").is_err(),
            "changed"
        );
        let state = ask(&request(), "return 1", "alice").request_state.unwrap();
        let no = [(KEY.to_string(), serde_json::json!({"action": "decline"}))].into();
        let (_, word) = answer(&state, Some(&no), "return 1", "alice").unwrap();
        assert!(matches!(word, Confirmation::Denied(_)));
    }

    #[test]
    fn one_owner_asking_without_end_drops_only_its_own_questions() {
        let patient = ask(&request(), "return 1", "patient")
            .request_state
            .unwrap();
        let first = ask(&request(), "return 1", "flooder")
            .request_state
            .unwrap();
        for _ in 0..MAX_PENDING + 10 {
            ask(&request(), "return 1", "flooder");
        }
        assert!(
            answer(&first, Some(&yes()), "return 1", "flooder").is_err(),
            "the flooder's oldest question was dropped"
        );
        assert!(
            answer(&patient, Some(&yes()), "return 1", "patient").is_ok(),
            "another owner's question is still there"
        );
    }
}
