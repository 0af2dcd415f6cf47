//! `execute_code` as an MCP task (the tasks extension, rmcp's [`TaskManager`]), for
//! clients that declare it: the handle at once, the result through `tasks/get`, a wall
//! clock of its own (`codemode.tasks`), cancellation, the tool calls as the task's status.

use rmcp::{
    ErrorData as McpError, RoleServer,
    model::{CallToolResponse, CreateTaskResult, JsonObject},
    service::RequestContext,
    task_manager::{TaskExit, TaskManager, TaskOptions},
};
use tokio_util::sync::CancellationToken;

use super::{CodeModeServer, refusal, render, report_calls};
use crate::{executor::RunOptions, sandbox::ErrorKind};

/// The tasks of one session, kept by rmcp's task manager.
#[derive(Clone)]
pub(super) struct SessionTasks(pub(super) TaskManager);

impl std::fmt::Debug for SessionTasks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionTasks")
            .field("running", &self.0.running_task_count())
            .finish()
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
        tasks: &TaskManager,
        arguments: JsonObject,
        context: &RequestContext<RoleServer>,
    ) -> CallToolResponse {
        let settings = *self.codemode.tasks();
        let admitted = match self.admit(arguments) {
            Ok(admitted) => admitted,
            Err(refusal) => return (*refusal).into(),
        };
        if tasks.running_task_count() >= settings.max_running {
            return refusal(&format!(
                "this session already has {} programs running as tasks, as many as it may (codemode.tasks.maxRunning); nothing was run. Wait for one to finish (tasks/get), or combine work into fewer executions",
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
        let session_ended = self.session_ended.clone();
        let task = tasks.spawn(
            TaskOptions::new()
                // Readable for `keepMs` past the deadline (rmcp keeps a finished task one
                // more such window).
                .with_ttl_ms(settings.timeout_ms.saturating_add(settings.keep_ms))
                .with_poll_interval_ms(TASK_POLL_INTERVAL_MS)
                .with_status_message("running"),
            move |task| {
                Box::pin(async move {
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
                    let options = RunOptions {
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
                    ))
                })
            },
        );
        CallToolResponse::Task(CreateTaskResult::new(task))
    }
}
