//! Confirmations for clients of protocol 2026-07-28, which take no server-to-client
//! requests: a run that needs the user's word is answered with an `input_required` result
//! (SEP-2322) carrying the question and a `requestState`; the client asks its user and
//! sends the same call again with the answer and that state.
//!
//! - A confirmation of a tool the program names is asked before anything runs: the run is
//!   refused at its pre-flight, the question asked, and the retry runs the program with
//!   the answer.
//! - One reached mid-run (a computed name, the data-flow guard) parks the run: its isolate
//!   waits at the call, not yet made, while the server answers `input_required`; the retry
//!   hands the answer to the waiting call and follows the same run on, so nothing before
//!   it runs twice. Nobody answering within `codemode.policy.approvalTimeoutMs` refuses the
//!   call (kind `policy` if the program lets it end the run). The run's own clock
//!   (`timeoutMs`) stands still while it waits (see [`crate::sandbox::RunClock`]).
//!
//! The state is a random handle (256 bits) to what is kept here: the program's hash, its
//! owner, the question and an expiry. It is used once; a changed, replayed, expired or
//! foreign one, or one from before a restart, resumes nothing.

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
use tokio::sync::{mpsc, oneshot};
use tokio_util::sync::CancellationToken;

use super::state_scope::StateScope;
use crate::digest;
use crate::policy::{ConfirmRequest, Confirmation, Confirmer};
use crate::record::Execution;

/// How long past its approval timeout a parked run's state still finds the run, so that a
/// retry arriving just late is told how the run ended rather than that nothing is known.
const LATE_RETRY: Duration = Duration::from_secs(60);
/// Questions waiting at once; past it the heaviest owner's oldest are forgotten.
const MAX_PENDING: usize = 4096;
/// The key of the one input request.
const KEY: &str = "confirm";
/// The optional key of a mid-run answer that approves the tool's later calls too.
const FOR_REST: &str = "forRestOfExecution";

/// A question a run asks mid-run, and where its answer goes.
pub(super) struct Asking {
    request: ConfirmRequest,
    reply: oneshot::Sender<Confirmation>,
}

impl Asking {
    /// Whether the waiting call gave up on its answer already.
    pub(super) fn is_settled(&self) -> bool {
        self.reply.is_closed()
    }

    /// Answers the waiting call with a refusal instead of asking.
    pub(super) fn refuse(self, why: &str) {
        let _ = self.reply.send(Confirmation::Denied(why.into()));
    }
}

/// A run a modern request follows: it may end, or stop at a call to ask.
pub(super) struct Running {
    pub(super) execution: tokio::task::JoinHandle<Execution>,
    pub(super) questions: mpsc::UnboundedReceiver<Asking>,
    /// Stops the run (the client cancelled, or nobody will ever answer).
    pub(super) cancel: CancellationToken,
    pub(super) scope: StateScope,
    /// The question of a pre-flight that refused the run, to ask.
    pub(super) asked: Arc<Mutex<Option<ConfirmRequest>>>,
    /// Characters of the answer the model reads.
    pub(super) answer_chars: usize,
}

/// What a `requestState` names.
enum Waiting {
    /// A question asked before the run: nothing ran.
    Before { tools: String },
    /// A run stopped at a call until the answer comes.
    Parked {
        run: Box<Running>,
        reply: oneshot::Sender<Confirmation>,
        /// Past it the call was refused (nobody answered).
        answer_by: Instant,
    },
}

struct Pending {
    code_sha: String,
    owner: String,
    asked: Instant,
    /// Past it the state resumes nothing.
    forgotten_at: Instant,
    waiting: Waiting,
}

impl Pending {
    /// Forgetting a parked run stops it: nobody can answer its question any more.
    fn forget(self) {
        if let Waiting::Parked { run, .. } = self.waiting {
            run.cancel.cancel();
        }
    }
}

/// The questions waiting for answers and the runs waiting on them, of one server (one
/// [`crate::CodeMode`]): every handler of it shares them, since a retry, or a task's
/// answer, may reach another handler than the one that asked, while another server in the
/// same process keeps its own.
#[derive(Debug, Default)]
pub(crate) struct Approvals {
    /// By `requestState`.
    pending: Mutex<HashMap<String, Pending>>,
    /// Runs waiting for a user's answer now (parked, or a task's question), by owner:
    /// each holds an execution slot, so their number is capped server-wide and per owner.
    waiting: Arc<Mutex<HashMap<String, usize>>>,
}

impl std::fmt::Debug for Pending {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pending")
            .field("owner", &self.owner)
            .finish_non_exhaustive()
    }
}

fn code_sha(code: &str) -> String {
    digest::sha256_hex(code.as_bytes())
}

/// Keeps `waiting` under a fresh state; returns the state.
fn keep(
    approvals: &Approvals,
    code: &str,
    owner: &str,
    waiting: Waiting,
    forgotten_at: Instant,
) -> String {
    let state = format!(
        "cma_{}",
        base64::Engine::encode(
            &base64::engine::general_purpose::URL_SAFE_NO_PAD,
            digest::random_bytes::<32>()
        )
    );
    let mut pending = approvals.pending.lock().unwrap_or_else(|e| e.into_inner());
    let now = Instant::now();
    let expired: Vec<String> = pending
        .iter()
        .filter(|(_, p)| p.forgotten_at <= now)
        .map(|(k, _)| k.clone())
        .collect();
    for key in expired {
        if let Some(p) = pending.remove(&key) {
            p.forget();
        }
    }
    let full = if pending.len() >= MAX_PENDING {
        crate::state::oldest_of_heaviest_owner(
            pending.iter().map(|(k, p)| (k, p.owner.as_str(), p.asked)),
        )
    } else {
        None
    };
    if let Some(p) = full.and_then(|oldest| pending.remove(&oldest)) {
        p.forget();
    }
    pending.insert(
        state.clone(),
        Pending {
            code_sha: code_sha(code),
            owner: owner.to_string(),
            asked: now,
            forgotten_at,
            waiting,
        },
    );
    state
}

/// The `input_required` result of one question.
fn question(message: String, schema: ElicitationSchema, state: String) -> InputRequiredResult {
    let mut requests = InputRequests::new();
    requests.insert(KEY.into(), elicitation(message, schema));
    InputRequiredResult::new(Some(requests), Some(state))
}

/// The `input_required` result asking `request` (a run's up-front confirmation) of the
/// user of `owner`, for the program `code`; the question waits `timeout`.
pub(super) fn ask(
    approvals: &Approvals,
    request: &ConfirmRequest,
    code: &str,
    owner: &str,
    timeout: Duration,
) -> InputRequiredResult {
    let waiting = Waiting::Before {
        tools: request.tool.clone(),
    };
    let state = keep(approvals, code, owner, waiting, Instant::now() + timeout);
    let (message, schema) = before_run_question(request);
    question(message, schema, state)
}

/// What the user is asked about the tools a program names, before it runs.
fn before_run_question(request: &ConfirmRequest) -> (String, ElicitationSchema) {
    let at = request.site.map_or(String::new(), |site| {
        format!(" (first at line {} of the program)", site.line)
    });
    let message = format!(
        "A code-mode program{at} will call {}, which the policy asks you to confirm. Allow them for this run of the program?",
        request.tool
    );
    let schema = ElicitationSchema::builder()
        .required_bool_with(KEY, |b| b.title("Allow these calls?"))
        .build()
        .unwrap_or_else(|_| ElicitationSchema::builder().build_unchecked());
    (message, schema)
}

/// What the user is asked about one call a running program is about to make.
fn call_question(request: &ConfirmRequest, timeout: Duration) -> (String, ElicitationSchema) {
    let mut message = super::confirm::describe_call(request);
    message.push_str(&format!(
        " It waits for your answer (at most {} s). Allow this call?",
        timeout.as_secs().max(1)
    ));
    let schema = ElicitationSchema::builder()
        .required_bool_with(KEY, |b| b.title("Allow this call?"))
        .optional_bool(FOR_REST, false)
        .build()
        .unwrap_or_else(|_| ElicitationSchema::builder().build_unchecked());
    (message, schema)
}

/// An elicitation of `message` in `schema`, as an input request.
fn elicitation(message: String, schema: ElicitationSchema) -> InputRequest {
    InputRequest::Elicitation(ElicitRequest::new(
        ElicitRequestParams::FormElicitationParams {
            meta: None,
            message,
            requested_schema: schema,
        },
    ))
}

/// The `input_required` result of a run stopped mid-run at `asking`: the run is kept,
/// waiting, under the state the result carries.
pub(super) fn park(
    approvals: &Approvals,
    asking: Asking,
    run: Running,
    code: &str,
    owner: &str,
    timeout: Duration,
) -> InputRequiredResult {
    let Asking { request, reply } = asking;
    let answer_by = Instant::now() + timeout;
    let waiting = Waiting::Parked {
        run: Box::new(run),
        reply,
        answer_by,
    };
    let state = keep(approvals, code, owner, waiting, answer_by + LATE_RETRY);
    let (message, schema) = call_question(&request, timeout);
    question(message, schema, state)
}

/// What a retry's `requestState` resumes.
pub(super) enum Resumed {
    /// A question asked before the run: the tools asked about and the user's word.
    Before(String, Confirmation),
    /// A parked run, its waiting call given the answer (or, past the approval timeout,
    /// already refused): follow it on.
    Parked(Box<Running>),
}

/// The user's word in a retry's `inputResponses`.
fn word(responses: Option<&rmcp::model::InputResponses>) -> Confirmation {
    word_in(responses.and_then(|r| r.get(KEY)))
}

/// The user's word in an elicitation's answer (`{action, content}`).
fn word_in(reply: Option<&serde_json::Value>) -> Confirmation {
    let action = reply.and_then(|r| r.get("action")).and_then(|a| a.as_str());
    let content = reply.and_then(|r| r.get("content"));
    let allowed = content
        .and_then(|c| c.get(KEY))
        .and_then(serde_json::Value::as_bool);
    let for_rest = content
        .and_then(|c| c.get(FOR_REST))
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    match (action, allowed) {
        (Some("accept"), Some(true)) if for_rest => Confirmation::ForExecution,
        (Some("accept"), Some(true)) => Confirmation::Once,
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
    }
}

/// What the retry answered for the run of `code` by `owner`, or why the state resumes
/// nothing.
pub(super) fn answer(
    approvals: &Approvals,
    state: &str,
    responses: Option<&rmcp::model::InputResponses>,
    code: &str,
    owner: &str,
) -> Result<Resumed, String> {
    const AGAIN: &str = "Run the program again (without requestState) to be asked anew";
    // Checked before it is used up: a wrong program or client must not spend the question
    // another retry may still answer.
    let pending = {
        let mut waiting = approvals.pending.lock().unwrap_or_else(|e| e.into_inner());
        match waiting.get(state) {
            Some(p) if p.owner == owner && p.code_sha == code_sha(code) => waiting.remove(state),
            _ => None,
        }
    };
    // One answer for a state that is unknown, spent, or another program's or client's: a
    // leaked state must not tell whoever holds it that it is still live.
    let Some(pending) = pending else {
        return Err(format!(
            "nothing ran: this requestState names no question waiting here for this program and this client (it was answered already, it was asked for another program or client, it is not one this server asked, or the server restarted since: a run waiting for an answer lives only in the server that asked). {AGAIN}"
        ));
    };
    if pending.forgotten_at <= Instant::now() {
        let waited = pending
            .forgotten_at
            .saturating_duration_since(pending.asked);
        pending.forget();
        return Err(format!(
            "nothing more ran: the question expired ({} s without an answer). {AGAIN}",
            waited.as_secs()
        ));
    }
    match pending.waiting {
        // Asked before the run, the question was about every call of those tools.
        Waiting::Before { tools } => Ok(Resumed::Before(
            tools,
            match word(responses) {
                Confirmation::Once => Confirmation::ForExecution,
                other => other,
            },
        )),
        Waiting::Parked {
            run,
            reply,
            answer_by,
        } => {
            // Past `answer_by` the waiting call was refused already; the run went on without
            // the answer, and the retry learns how it ended.
            if Instant::now() < answer_by {
                let _ = reply.send(word(responses));
            }
            Ok(Resumed::Parked(run))
        }
    }
}

/// The confirmer of a modern request: before the run, it notes the question (to be asked
/// by `input_required`) or gives the answer the retry carried; mid-run, it stops the call
/// and hands the question to the request following the run, which parks it.
pub(super) struct AnsweringConfirmer {
    /// The answer a retry carried: the tools asked about and the user's word.
    pub(super) answered: Option<(String, Confirmation)>,
    /// The question of the first leg, to ask.
    pub(super) asked: Arc<Mutex<Option<ConfirmRequest>>>,
    /// Where mid-run questions go.
    pub(super) questions: mpsc::UnboundedSender<Asking>,
    /// How long a mid-run question waits for its answer.
    pub(super) timeout: Duration,
    /// Runs that may wait parked at once, server-wide: each holds an execution slot, and
    /// parked runs must never hold them all.
    pub(super) max_parked: usize,
    /// Whose run this is.
    pub(super) owner: String,
    /// The server's questions and waiting runs.
    pub(super) approvals: Arc<Approvals>,
}

/// A place among the runs waiting for an answer, held until the question settles.
#[derive(Debug)]
pub(super) struct Waiter {
    owner: String,
    waiting: Arc<Mutex<HashMap<String, usize>>>,
}

impl Waiter {
    /// A place for `owner`'s run, or why there is none: `most` may wait server-wide, and
    /// one owner may take half of them (at least one), so that one client cannot keep every
    /// other from being asked.
    pub(super) fn reserve(approvals: &Approvals, owner: &str, most: usize) -> Result<Self, String> {
        let mut waiting = approvals.waiting.lock().unwrap_or_else(|e| e.into_inner());
        let total: usize = waiting.values().sum();
        let own = waiting.get(owner).copied().unwrap_or(0);
        let share = most.div_ceil(2).max(1).min(most);
        if total >= most || own >= share {
            return Err(format!(
                "the user could not be asked: {total} runs already wait for their users' answers ({own} of them this client's; at most {most} may, {share} per client, since each holds one of the server's execution slots). Try again once they are answered, or call the tool by its literal name (tools.ns.tool(...)) so that it is confirmed before the run"
            ));
        }
        *waiting.entry(owner.to_string()).or_default() += 1;
        Ok(Self {
            owner: owner.to_string(),
            waiting: approvals.waiting.clone(),
        })
    }
}

impl Drop for Waiter {
    fn drop(&mut self) {
        let mut waiting = self.waiting.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(n) = waiting.get_mut(&self.owner) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                waiting.remove(&self.owner);
            }
        }
    }
}

impl Confirmer for AnsweringConfirmer {
    fn can_ask(&self) -> bool {
        true
    }

    fn confirm(&self, request: ConfirmRequest) -> BoxFuture<'static, Confirmation> {
        if !request.before_run {
            let place = match Waiter::reserve(&self.approvals, &self.owner, self.max_parked) {
                Ok(place) => place,
                Err(why) => return Box::pin(std::future::ready(Confirmation::Denied(why))),
            };
            let (reply, answer) = oneshot::channel();
            let asked = self.questions.send(Asking { request, reply });
            let timeout = self.timeout;
            return Box::pin(async move {
                // Held while the question waits, whatever ends it.
                let _place = place;
                if asked.is_err() {
                    return Confirmation::Denied(
                        "nobody follows this run any more to ask the user".into(),
                    );
                }
                match tokio::time::timeout(timeout, answer).await {
                    Ok(Ok(word)) => word,
                    Ok(Err(_)) => Confirmation::Denied(
                        "the confirmation was abandoned (the run's question was forgotten)".into(),
                    ),
                    Err(_) => Confirmation::Denied(nobody_answered(timeout)),
                }
            });
        }
        let word = match &self.answered {
            Some((tools, word)) if *tools == request.tool => word.clone(),
            Some(_) => {
                Confirmation::Denied("the answer the retry carried was for other tools".into())
            }
            None => {
                *self.asked.lock().unwrap_or_else(|e| e.into_inner()) = Some(request);
                Confirmation::Deferred
            }
        };
        Box::pin(std::future::ready(word))
    }
}

/// The confirmer of a task run for a 2026-07-28 client: a question, before the run or at
/// a call, becomes the task's `input_required` state (its `inputRequests` in `tasks/get`),
/// and the client's `tasks/update` brings the answer; the run waits meanwhile.
pub(super) struct TaskConfirmer {
    pub(super) task: rmcp::task_manager::TaskContext,
    /// The task's manager, to withdraw a question nobody answered.
    pub(super) manager: rmcp::task_manager::TaskManager,
    pub(super) timeout: Duration,
    /// Whose task this is, and how many runs may wait for answers (see [`Waiter`]).
    pub(super) owner: String,
    pub(super) max_waiting: usize,
    /// Numbers the questions: a task's input keys are used once.
    pub(super) asked: std::sync::atomic::AtomicU32,
    /// The server's questions and waiting runs.
    pub(super) approvals: Arc<Approvals>,
}

impl Confirmer for TaskConfirmer {
    fn can_ask(&self) -> bool {
        true
    }

    fn confirm(&self, request: ConfirmRequest) -> BoxFuture<'static, Confirmation> {
        let n = self.asked.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
        let key = format!("{KEY}-{n}");
        let before_run = request.before_run;
        let (message, schema) = if before_run {
            before_run_question(&request)
        } else {
            call_question(&request, self.timeout)
        };
        let (task, timeout) = (self.task.clone(), self.timeout);
        let place = match Waiter::reserve(&self.approvals, &self.owner, self.max_waiting) {
            Ok(place) => place,
            Err(why) => return Box::pin(std::future::ready(Confirmation::Denied(why))),
        };
        let withdraw = Withdraw {
            manager: self.manager.clone(),
            task: task.task_id().to_string(),
            key: key.clone(),
        };
        Box::pin(async move {
            let _place = place;
            // However the wait ends (no answer in time, the run stopped), `tasks/get` no
            // longer shows the question.
            let _withdraw = withdraw;
            let asked = task.request_input(key, elicitation(message, schema));
            match tokio::time::timeout(timeout, asked).await {
                Err(_) => Confirmation::Denied(nobody_answered(timeout)),
                Ok(Err(_)) => Confirmation::Denied(
                    "the task was cancelled while the user was being asked".into(),
                ),
                Ok(Ok(reply)) => match word_in(Some(&reply)) {
                    // Asked before the run, the question was about every call of those tools.
                    Confirmation::Once if before_run => Confirmation::ForExecution,
                    word => word,
                },
            }
        })
    }
}

/// Takes a task's question back when dropped: rmcp keeps a question until it is answered
/// or the task is cancelled, so one nobody answered in time would show in `tasks/get` as
/// waiting until the task ended. An answered question is gone already; this is then a
/// no-op.
struct Withdraw {
    manager: rmcp::task_manager::TaskManager,
    task: String,
    key: String,
}

impl Drop for Withdraw {
    fn drop(&mut self) {
        // Delivered to nobody: the wait for it has ended.
        let _ = self.manager.update_task(
            &self.task,
            [(std::mem::take(&mut self.key), serde_json::Value::Null)],
        );
    }
}

/// Why a call nobody confirmed in time was refused.
pub(super) fn nobody_answered(timeout: Duration) -> String {
    format!(
        "nobody answered the confirmation within {} ms (codemode.policy.approvalTimeoutMs)",
        timeout.as_millis()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    const TTL: Duration = Duration::from_secs(300);

    fn before(resumed: Result<Resumed, String>) -> Result<(String, Confirmation), String> {
        resumed.map(|r| match r {
            Resumed::Before(tools, word) => (tools, word),
            Resumed::Parked(_) => panic!("a question before the run"),
        })
    }

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
        let approvals = Approvals::default();
        let asked = ask(&approvals, &request(), "return 1", "alice", TTL);
        let state = asked.request_state.clone().unwrap();
        assert!(
            before(answer(
                &approvals,
                &state,
                Some(&yes()),
                "return 2",
                "alice"
            ))
            .is_err(),
            "another program"
        );
        let asked = ask(&approvals, &request(), "return 1", "alice", TTL);
        let state = asked.request_state.clone().unwrap();
        assert!(
            before(answer(&approvals, &state, Some(&yes()), "return 1", "bob")).is_err(),
            "another owner"
        );
        let state = ask(&approvals, &request(), "return 1", "alice", TTL)
            .request_state
            .unwrap();
        let (tools, word) = before(answer(
            &approvals,
            &state,
            Some(&yes()),
            "return 1",
            "alice",
        ))
        .unwrap();
        assert_eq!(
            (tools.as_str(), word),
            ("tools.toy.add", Confirmation::ForExecution)
        );
        assert!(
            before(answer(
                &approvals,
                &state,
                Some(&yes()),
                "return 1",
                "alice"
            ))
            .is_err(),
            "used once"
        );
        let changed = format!("{}x", &state[..state.len() - 1]);
        assert!(
            before(answer(
                &approvals,
                &changed,
                Some(&yes()),
                "return 1",
                "alice"
            ))
            .is_err(),
            "changed"
        );
        let state = ask(&approvals, &request(), "return 1", "alice", TTL)
            .request_state
            .unwrap();
        let no = [(KEY.to_string(), serde_json::json!({"action": "decline"}))].into();
        let (_, word) = before(answer(&approvals, &state, Some(&no), "return 1", "alice")).unwrap();
        assert!(matches!(word, Confirmation::Denied(_)));
    }

    #[test]
    fn waiting_runs_are_capped_in_total_and_per_owner_and_freed_when_settled() {
        let approvals = Approvals::default();
        let first = Waiter::reserve(&approvals, "waiter-a", 3).unwrap();
        let second = Waiter::reserve(&approvals, "waiter-a", 3).unwrap();
        assert!(
            Waiter::reserve(&approvals, "waiter-a", 3).is_err(),
            "one owner takes half"
        );
        let third = Waiter::reserve(&approvals, "waiter-b", 3).unwrap();
        let full = Waiter::reserve(&approvals, "waiter-c", 3).unwrap_err();
        assert!(full.contains("3 runs already wait"), "{full}");
        drop(first);
        let fourth = Waiter::reserve(&approvals, "waiter-c", 3);
        assert!(fourth.is_ok(), "a settled question frees its place");
        assert!(
            Waiter::reserve(&approvals, "anyone", 0).is_err(),
            "with one slot, nobody waits"
        );
        drop((second, third, fourth));
    }

    #[test]
    fn one_owner_asking_without_end_drops_only_its_own_questions() {
        let approvals = Approvals::default();
        let patient = ask(&approvals, &request(), "return 1", "patient", TTL)
            .request_state
            .unwrap();
        let first = ask(&approvals, &request(), "return 1", "flooder", TTL)
            .request_state
            .unwrap();
        for _ in 0..MAX_PENDING + 10 {
            ask(&approvals, &request(), "return 1", "flooder", TTL);
        }
        assert!(
            before(answer(
                &approvals,
                &first,
                Some(&yes()),
                "return 1",
                "flooder"
            ))
            .is_err(),
            "the flooder's oldest question was dropped"
        );
        assert!(
            before(answer(
                &approvals,
                &patient,
                Some(&yes()),
                "return 1",
                "patient"
            ))
            .is_ok(),
            "another owner's question is still there"
        );
    }
}
