//! `execute_code` as an MCP task (the tasks extension, rmcp's [`TaskManager`]), for
//! clients that declare it: the handle at once, the result through `tasks/get`, a wall
//! clock of its own (`codemode.tasks`), cancellation, the tool calls as the task's status.

use std::{
    collections::HashMap,
    sync::{
        Arc, Mutex,
        atomic::{AtomicBool, Ordering},
    },
    time::{Duration, Instant},
};

use rmcp::{
    ErrorData as McpError, RoleServer,
    model::{CallToolResponse, CreateTaskResult, DetailedTask, JsonObject},
    service::RequestContext,
    task_manager::{TaskExit, TaskManager, TaskOptions},
};
use tokio_util::sync::CancellationToken;

use super::{CodeModeServer, refusal, render, report_calls};
use crate::{executor::RunOptions, sandbox::ErrorKind};

/// The tasks of this server, each owned by whoever started it (see
/// [`CodeModeServer::task_owner`]): a task id another owner sends is answered as unknown,
/// exactly as one nobody issued.
#[derive(Clone, Default)]
pub(super) struct OwnedTasks {
    manager: TaskManager,
    owners: Arc<Mutex<HashMap<String, Owned>>>,
}

/// Whose a task is, and whether its program still runs.
struct Owned {
    owner: String,
    done: Arc<AtomicBool>,
    /// Past this the manager has dropped the task too.
    forgotten_at: Instant,
}

impl std::fmt::Debug for OwnedTasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OwnedTasks")
            .field("running", &self.manager.running_task_count())
            .finish()
    }
}

impl OwnedTasks {
    /// The manager's answer for a task of `owner`'s, or rmcp's own "unknown task" for any
    /// other id (the same error, so a prober cannot tell a foreign task from none).
    fn of<T>(
        &self,
        owner: &str,
        task_id: &str,
        then: impl FnOnce(&TaskManager) -> Result<T, McpError>,
    ) -> Result<T, McpError> {
        let owned = self
            .owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(task_id)
            .is_some_and(|o| o.owner == owner);
        if owned {
            then(&self.manager)
        } else {
            Err(McpError::invalid_params(
                format!("unknown task: {task_id}"),
                None,
            ))
        }
    }

    pub(super) fn get(&self, owner: &str, task_id: &str) -> Result<DetailedTask, McpError> {
        self.of(owner, task_id, |m| m.get_task(task_id))
    }

    pub(super) fn update(
        &self,
        owner: &str,
        task_id: &str,
        responses: impl IntoIterator<Item = (String, serde_json::Value)>,
    ) -> Result<(), McpError> {
        self.of(owner, task_id, |m| m.update_task(task_id, responses))
    }

    pub(super) fn cancel(&self, owner: &str, task_id: &str) -> Result<(), McpError> {
        self.of(owner, task_id, |m| m.cancel_task(task_id))
    }

    /// Programs of `owner` still running as tasks; forgets tasks the manager has dropped.
    fn running_of(&self, owner: &str) -> usize {
        let mut owners = self.owners.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        owners.retain(|_, o| !o.done.load(Ordering::SeqCst) || now < o.forgotten_at);
        owners
            .values()
            .filter(|o| o.owner == owner && !o.done.load(Ordering::SeqCst))
            .count()
    }
}

/// Sets its flag when dropped: a task's future may end, or be dropped, anywhere.
struct Finished(Arc<AtomicBool>);

impl Drop for Finished {
    fn drop(&mut self) {
        self.0.store(true, Ordering::SeqCst);
    }
}

/// Suggested interval between a client's `tasks/get` polls.
const TASK_POLL_INTERVAL_MS: u64 = 500;

pub(super) fn no_tasks() -> McpError {
    McpError::invalid_request(
        "this server runs no tasks here (codemode.tasks.enabled is false, or the transport is stateless HTTP)",
        None,
    )
}

impl CodeModeServer {
    /// `execute_code` for a client that takes tasks: the handle now, the result through
    /// `tasks/get`. Bad arguments and a full session are answered at once, as plain results.
    pub(super) fn execute_code_as_task(
        &self,
        tasks: &OwnedTasks,
        arguments: JsonObject,
        context: &RequestContext<RoleServer>,
    ) -> CallToolResponse {
        let settings = *self.codemode.tasks();
        let admitted = match self.admit(arguments, context) {
            Ok(admitted) => admitted,
            Err(refusal) => return (*refusal).into(),
        };
        let owner = self.task_owner(context);
        if tasks.running_of(&owner) >= settings.max_running {
            return refusal(&format!(
                "this client already has {} programs running as tasks, as many as it may (codemode.tasks.maxRunning); nothing was run. Wait for one to finish (tasks/get), or combine work into fewer executions",
                settings.max_running
            ))
            .into();
        }
        let scope = match self.state_scope(admitted.state.as_deref(), context) {
            Ok(scope) => scope,
            Err(message) => return super::tool_error(message).into(),
        };
        let peer = context.peer.clone();
        let token = context.meta.get_progress_token();
        let options = RunOptions {
            state_key: Some(scope.key.clone()),
            state_used: Some(scope.used.clone()),
            ..self.run_options(context)
        };
        let codemode = self.codemode.clone();
        // A legacy session's task ends with its session; a modern request has none (its
        // handler ends with the request), so its task runs to its own clock.
        let modern = super::is_modern(context);
        let approval_timeout = codemode.approval_timeout();
        let can_ask = context
            .client_capabilities()
            .is_some_and(|caps| caps.elicitation.is_some());
        let (confirming_owner, max_waiting) = (self.owner(context), self.max_waiting());
        let session_ended = if modern {
            CancellationToken::new()
        } else {
            self.session_ended.clone()
        };
        let done = Arc::new(AtomicBool::new(false));
        let finished = done.clone();
        // A question before the run is outside the run's clock: the task lasts that long too.
        let kept = Duration::from_millis(settings.timeout_ms.saturating_add(settings.keep_ms))
            .saturating_add(approval_timeout);
        let manager = tasks.manager.clone();
        let approvals = self.codemode.approvals().clone();
        let (outputs, answer_owner) = (self.codemode.outputs().clone(), self.task_owner(context));
        let answer_chars = admitted.answer_chars;
        let task = tasks.manager.spawn(
            TaskOptions::new()
                // Readable for `keepMs` past the deadline (rmcp keeps a finished task one
                // more such window).
                .with_ttl_ms(u64::try_from(kept.as_millis()).unwrap_or(u64::MAX))
                .with_poll_interval_ms(TASK_POLL_INTERVAL_MS)
                .with_status_message("running"),
            move |task| {
                // Marks the task done however its future ends, polled or not (rmcp may drop
                // it at its TTL).
                let finished = Finished(finished);
                Box::pin(async move {
                    let _finished = finished;
                    let cancel = CancellationToken::new();
                    let stop = {
                        let (task, cancel) = (task.clone(), cancel.clone());
                        async move {
                            tokio::select! {
                                () = task.cancelled() => cancel.cancel(),
                                () = session_ended.cancelled() => cancel.cancel(),
                                () = cancel.cancelled() => {}
                            }
                        }
                    };
                    tokio::spawn(stop);
                    // A modern client takes no server-to-client request: its task asks
                    // through its own input_required state instead.
                    let confirmer: Option<crate::policy::SharedConfirmer> = if modern && can_ask {
                        Some(Arc::new(super::approvals::TaskConfirmer {
                            task: task.clone(),
                            manager,
                            timeout: approval_timeout,
                            owner: confirming_owner,
                            max_waiting,
                            asked: Default::default(),
                            approvals: approvals.clone(),
                        }))
                    } else {
                        options.confirmer.clone()
                    };
                    let options = RunOptions {
                        confirmer,
                        timeout: admitted.timeout,
                        typecheck: admitted.typecheck,
                        wall_clock: Some(settings.timeout()),
                        progress: Some(report_calls(
                            token.map(|token| (peer, token)),
                            Some(task.clone()),
                        )),
                        cancel: Some(cancel.clone()),
                        ..options
                    };
                    let execution = codemode.execute_with(&admitted.code, options).await;
                    // Ends the watcher above.
                    cancel.cancel();
                    drop(admitted);
                    if task.is_cancel_requested()
                        && execution
                            .outcome
                            .result
                            .as_ref()
                            .is_err_and(|e| e.kind == ErrorKind::Cancelled)
                    {
                        return Err(TaskExit::Cancelled);
                    }
                    Ok(render::call_tool_result_in(
                        &execution,
                        scope.handle_to_show(),
                        &render::Budget {
                            chars: answer_chars,
                            keep: Some((&outputs, &answer_owner)),
                        },
                    ))
                })
            },
        );
        tasks
            .owners
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(
                task.task_id.clone(),
                Owned {
                    owner,
                    done,
                    // rmcp keeps a finished task one more `ttl` window.
                    forgotten_at: Instant::now() + kept.saturating_mul(2),
                },
            );
        CallToolResponse::Task(CreateTaskResult::new(task))
    }
}
