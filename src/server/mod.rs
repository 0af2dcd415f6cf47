//! The MCP server: tools `execute_code` and `search_tools`, the declaration resources and
//! the prompts, over rmcp: on stdio, or over HTTP ([`http`]).

mod approvals;
mod budget;
mod confirm;
mod describe;
pub mod http;
mod outputs;
pub(crate) mod principal;
mod prompts;
mod render;
mod resources;
mod skills;
mod state_scope;
mod tasks;

use std::{sync::Arc, time::Duration};

use rmcp::{
    ErrorData as McpError, RoleServer, ServerHandler,
    handler::server::{router::tool::ToolRouter, wrapper::Parameters},
    model::{
        CacheScope, CallToolRequestParams, CallToolResponse, CallToolResult, CancelTaskParams,
        ContentBlock, DiscoverResult, GetPromptRequestParams, GetPromptResponse, GetTaskParams,
        GetTaskResult, Implementation, InitializeRequestParams, InitializeResult, JsonObject,
        ListPromptsResult, ListResourcesResult, ListToolsResult, PaginatedRequestParams,
        ProgressNotificationParam, ReadResourceRequestParams, ReadResourceResponse,
        ServerCapabilities, ServerConfig, ServerNotification, SubscriptionFilter, Tool,
        UpdateTaskParams,
    },
    service::{NotificationContext, RequestContext, SubscriptionContext},
    task_manager::TaskContext,
    tool, tool_handler, tool_router,
};
use schemars::JsonSchema;
use serde::Deserialize;

use crate::{
    audit::Origin,
    catalog::{Detail, portable_schema},
    embed::CodeMode,
    executor::{CallRecord, Execution, RunOptions},
    sandbox::{ErrorKind, ProgramError},
};

use tasks::{OwnedTasks, no_tasks};

use crate::tenants::Tenancy;

pub(crate) use approvals::Approvals;
pub(crate) use outputs::Outputs;
pub use principal::{LOCAL as LOCAL_PRINCIPAL, OPERATOR_SCOPE, Principal, is_principal_name};
pub use skills::{DeleteSkillInput, ListSkillsInput, SaveSkillInput};

pub use describe::{EXECUTE_CODE_CONTRACT, execute_code_description, search_answer};
pub use render::{ErrorReport, ExecuteCodeOutput, output as render_output, text as render_text};

/// Server instructions sent at initialisation.
pub const INSTRUCTIONS: &str = include_str!("instructions.md");

/// Input of `execute_code`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct ExecuteCodeInput {
    /// The program: TypeScript or JavaScript, run as the body of an async function. Use `await` freely and `return` the result.
    pub code: String,
    /// Wall-clock limit for this run in milliseconds. It can lower the server's limit, never raise it.
    #[schemars(range(min = 1))]
    pub timeout_ms: Option<u64>,
    /// Check the program against the tools' TypeScript declarations before running it; type errors come back at their line:column and nothing runs. Omitted: the server's default.
    pub typecheck: Option<bool>,
    /// The `state` handle an earlier result returned: this run's `state.*` calls see what was stored under it. Omitted: a session's own store (stdio, HTTP sessions), else a new, empty one whose handle the result returns.
    pub state: Option<String>,
    /// Characters of the answer to read at most (result, logs, error, calls), below the server's own budget; past it each part keeps its head and tail and the whole output is kept as a resource. Omitted: the server's budget.
    #[schemars(range(min = 1))]
    pub max_output_chars: Option<u64>,
}

/// Input of `search_tools`.
#[derive(Debug, Deserialize, JsonSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct SearchToolsInput {
    /// Words to look for in tool names and descriptions, e.g. "read file" or "github issue". Empty lists every tool.
    pub query: String,
    /// "names": one line per tool; "signatures" (default): TypeScript declarations with doc comments; "full": declarations plus the ToolError type.
    pub detail: Option<Detail>,
    /// Most tools to return (default 10).
    #[schemars(range(min = 1, max = 200))]
    pub limit: Option<u32>,
}

/// The code-mode MCP server.
#[derive(Debug, Clone)]
pub struct CodeModeServer {
    codemode: CodeMode,
    /// Executions this session may run at once; `None` leaves only the executor's caps.
    session_slots: Option<Arc<tokio::sync::Semaphore>>,
    /// `stdio`, `http` or `sse`, for the audit log.
    transport: &'static str,
    /// The session id, when the transport has sessions this handler alone serves.
    session: Option<String>,
    /// Cancelled when the session's last handler is dropped: ends its notification task.
    session_ended: tokio_util::sync::CancellationToken,
    _end_session_on_drop: Arc<tokio_util::sync::DropGuard>,
    /// The server's tasks (`execute_code` run as MCP tasks), shared by every handler of
    /// one HTTP server; `None` when off.
    tasks: Option<OwnedTasks>,
    /// Serving stateless HTTP: no session id was issued, so one a request sends is only
    /// the client's word.
    stateless: bool,
    tool_router: ToolRouter<Self>,
}

/// The `execute_code` tool exactly as this server lists it for `codemode`'s catalog now
/// (name, description, input and output schemas): the tool definition to give a model in
/// a tool-use loop of one's own (see `examples/tool_use.rs`).
pub fn execute_code_tool(codemode: &CodeMode) -> Tool {
    let catalog = codemode.catalog();
    let allowed = codemode.egress().map(|egress| egress.allowed());
    let description = execute_code_description(&catalog, allowed.as_deref());
    let listed = CodeModeServer::tool_router()
        .list_all()
        .into_iter()
        .find(|tool| tool.name == "execute_code");
    let mut tool = listed.unwrap_or_else(|| {
        Tool::new(
            "execute_code",
            String::new(),
            input_schema::<ExecuteCodeInput>(),
        )
        .with_raw_output_schema(execute_code_output_schema())
    });
    tool.description = Some(description.into());
    tool
}

/// The output schema of `execute_code`, derived from [`ExecuteCodeOutput`].
pub fn execute_code_output_schema() -> Arc<JsonObject> {
    portable_schema(rmcp::handler::server::tool::schema_for_output::<
        ExecuteCodeOutput,
    >())
}

/// The input schema of a tool, derived from its typed arguments.
fn input_schema<T: JsonSchema + 'static>() -> Arc<JsonObject> {
    portable_schema(rmcp::handler::server::common::schema_for_type::<T>())
}

/// Reads typed arguments; the error names the key path and what the tool takes.
fn parse_arguments<T: serde::de::DeserializeOwned>(
    arguments: JsonObject,
    expected: &str,
) -> Result<T, String> {
    serde_path_to_error::deserialize(serde_json::Value::Object(arguments)).map_err(|err| match err
        .path()
        .to_string()
        .as_str()
    {
        "." => format!("invalid arguments: {}; {expected}", err.inner()),
        path => format!("invalid argument {path}: {}; {expected}", err.inner()),
    })
}

/// The caller's W3C trace context: `_meta.traceparent` (SEP-414), else the HTTP request's
/// `traceparent` header.
fn traceparent(context: &RequestContext<RoleServer>) -> Option<String> {
    context
        .meta
        .get("traceparent")
        .and_then(serde_json::Value::as_str)
        .map(str::to_string)
        .or_else(|| {
            context
                .extensions
                .get::<::http::request::Parts>()
                .and_then(|parts| parts.headers.get("traceparent"))
                .and_then(|value| value.to_str().ok())
                .map(str::to_string)
        })
}

fn tool_error(message: String) -> CallToolResult {
    CallToolResult::error(vec![ContentBlock::text(message)])
}

#[tool_router]
impl CodeModeServer {
    /// A server that offers `codemode`'s tools and runs programs on it.
    pub fn new(codemode: CodeMode) -> Self {
        let skills_on = codemode.skills().is_some();
        let session_ended = tokio_util::sync::CancellationToken::new();
        Self {
            transport: "stdio",
            session: None,
            session_slots: None,
            _end_session_on_drop: Arc::new(session_ended.clone().drop_guard()),
            session_ended,
            tasks: codemode.tasks().enabled.then(OwnedTasks::default),
            codemode,
            stateless: false,
            tool_router: if skills_on {
                Self::tool_router() + Self::skills_router()
            } else {
                Self::tool_router()
            },
        }
    }

    /// Serves stateless HTTP: no later request reaches this handler, so it offers no tasks
    /// (none could be polled), and an `Mcp-Session-Id` a request sends names no `state.*`
    /// store (no server issued it: two clients sending the same id would share one).
    pub fn stateless(mut self) -> Self {
        self.tasks = None;
        self.stateless = true;
        self
    }

    /// Keeps tasks in `tasks`, which other handlers of the same server share: a task
    /// belongs to its owner, not to the handler that started it.
    fn with_tasks(mut self, tasks: Option<&OwnedTasks>) -> Self {
        if self.tasks.is_some() {
            self.tasks = tasks.cloned();
        }
        self
    }

    /// Names the transport (and the session, if it has an id) in audit records.
    pub fn with_transport(mut self, transport: &'static str, session: Option<String>) -> Self {
        self.transport = transport;
        self.session = session;
        self
    }

    /// Who is asking, for the audit log: the client as it introduced itself, the
    /// transport, the session.
    fn origin(&self, context: &RequestContext<RoleServer>) -> Origin {
        let client = context
            .peer
            .peer_info()
            .map(|info| format!("{}/{}", info.client_info.name, info.client_info.version));
        // Streamable HTTP: the session is in the request's headers.
        let session = self.session.clone().or_else(|| {
            context
                .extensions
                .get::<::http::request::Parts>()
                .and_then(|parts| parts.headers.get("mcp-session-id"))
                .and_then(|id| id.to_str().ok())
                .map(str::to_string)
        });
        let principal = match self.transport {
            "http" | "sse" => principal::name(
                context
                    .extensions
                    .get::<::http::request::Parts>()
                    .map(|parts| &parts.extensions),
            ),
            _ => Some(self.codemode.local_principal().to_string()),
        };
        Origin {
            client,
            session,
            transport: self.transport.to_string(),
            principal,
        }
    }

    /// Caps the executions this one session (this handler) runs at once, so that one
    /// client of a shared server cannot take every slot; past it, `busy`.
    pub fn with_session_limit(mut self, executions: usize) -> Self {
        self.session_slots = Some(Arc::new(tokio::sync::Semaphore::new(executions.max(1))));
        self
    }

    // Arguments arrive untyped so that a bad one is reported with its key path; the
    // schema clients see is still derived from the typed struct.
    #[tool(
        name = "execute_code",
        title = "Run a code-mode program",
        description = EXECUTE_CODE_CONTRACT,
        input_schema = input_schema::<ExecuteCodeInput>(),
        output_schema = execute_code_output_schema(),
        // A program reaches upstream tools and the web: to another code-mode server's
        // data-flow guard, this one is an untrusted source and a sink, so that untrusted
        // data cannot lose its mark by passing through a nested execution.
        annotations(open_world_hint = true)
    )]
    async fn execute_code(
        &self,
        Parameters(arguments): Parameters<JsonObject>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        self.run_program(arguments, context).await
    }

    #[tool(
        name = "search_tools",
        title = "Find tools for code-mode programs",
        description = "Find the tools a code-mode program can call, by keywords in their names and descriptions, and get their TypeScript declarations. Use it before writing a program that calls tools you have not seen declared. Inside a program, `tools.$search(query)` answers from the same index.",
        input_schema = input_schema::<SearchToolsInput>()
    )]
    async fn search_tools(
        &self,
        Parameters(arguments): Parameters<JsonObject>,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        const EXPECTED: &str = "search_tools takes {\"query\": string, \"detail\"?: \"names\" | \"signatures\" | \"full\", \"limit\"?: integer}";
        let input: SearchToolsInput = match parse_arguments(arguments, EXPECTED) {
            Ok(input) => input,
            Err(message) => return Ok(tool_error(message)),
        };
        let catalog = self.catalog_for(&context);
        let limit = input.limit.map_or(10, |l| l.clamp(1, 200) as usize);
        let text = search_answer(
            &catalog,
            &input.query,
            input.detail.unwrap_or_default(),
            limit,
        );
        Ok(CallToolResult::success(vec![ContentBlock::text(text)]))
    }
}

/// An `execute_code` call whose arguments were read and which holds its session's slot.
struct Admitted {
    code: String,
    timeout: Option<Duration>,
    typecheck: Option<bool>,
    state: Option<String>,
    /// Characters of the answer (the server's budget, or less if the call asked).
    answer_chars: usize,
    _slot: Option<tokio::sync::OwnedSemaphorePermit>,
}

impl state_scope::StateScope {
    /// The handle the result names: the one given, or a new one whose store the run (or a
    /// skill it called) used.
    fn handle_to_show(&self) -> Option<&str> {
        let used = self.used.load(std::sync::atomic::Ordering::Relaxed);
        self.handle.as_deref().filter(|_| used || self.given)
    }
}

/// What changes this server's tool list (the `execute_code` description) and resource
/// list: the upstreams' tools, and the saved skills (a namespace of the catalog, and maybe
/// tools of their own).
struct CatalogChanges {
    catalog: tokio::sync::watch::Receiver<u64>,
    skills: Option<tokio::sync::watch::Receiver<u64>>,
}

impl CatalogChanges {
    /// The next change; `false` once nothing can change any more.
    async fn changed(&mut self) -> bool {
        let skills = async {
            match self.skills.as_mut() {
                Some(skills) => skills.changed().await,
                None => std::future::pending().await,
            }
        };
        tokio::select! {
            changed = self.catalog.changed() => changed.is_ok(),
            changed = skills => changed.is_ok(),
        }
    }
}

impl CodeModeServer {
    fn catalog_changes(&self) -> CatalogChanges {
        CatalogChanges {
            catalog: self.codemode.subscribe_changes(),
            skills: self.codemode.skills().map(|skills| skills.subscribe()),
        }
    }

    /// `execute_code`, its run followed to the end within the request.
    async fn run_program(
        &self,
        arguments: JsonObject,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResult, McpError> {
        let admitted = match self.admit(arguments, &context) {
            Ok(admitted) => admitted,
            Err(refusal) => return Ok(*refusal),
        };
        let progress = context
            .meta
            .get_progress_token()
            .map(|token| report_calls(Some((context.peer.clone(), token)), None));
        let scope = match self.state_scope(admitted.state.as_deref(), &context) {
            Ok(scope) => scope,
            Err(message) => return Ok(tool_error(message)),
        };
        let options = RunOptions {
            timeout: admitted.timeout,
            typecheck: admitted.typecheck,
            progress,
            cancel: Some(context.ct.clone()),
            state_key: Some(scope.key.clone()),
            state_used: Some(scope.used.clone()),
            ..self.run_options(&context)
        };
        // The client's cancellation stops the isolate and its tool calls; the run still
        // ends normally (kind `cancelled`), so it is audited like any other.
        let execution = self.codemode.execute_with(&admitted.code, options).await;
        // A whole output is kept as a task is: an anonymous legacy session's is its own.
        let owner = self.task_owner(&context);
        Ok(render::call_tool_result_in(
            &execution,
            scope.handle_to_show(),
            &self.budget(admitted.answer_chars, &owner),
        ))
    }

    /// Whose `state.*` store a run of this request sees (see [`state_scope`]).
    fn state_scope(
        &self,
        given: Option<&str>,
        context: &RequestContext<RoleServer>,
    ) -> Result<state_scope::StateScope, String> {
        // A session is a store of its own; so is this process over stdio. A modern request
        // has neither, nor has a request to a stateless server: an `Mcp-Session-Id` either
        // sends is the client's word, not a session.
        let owner = self.owner(context);
        let signing = self.codemode.state_signing_key();
        let implicit = match (self.transport, is_modern(context) || self.stateless) {
            ("http" | "sse", true) => None,
            ("http" | "sse", false) => self
                .origin(context)
                .session
                .map(|session| state_scope::session_key(&owner, &session, signing)),
            (other, _) => Some(other.to_string()),
        };
        state_scope::scope(given, &owner, implicit.as_deref(), signing)
    }

    /// Who a request comes from: over HTTP the principal the front door checked, or nobody
    /// in particular; over stdio (or in a library) this process's one client.
    fn owner(&self, context: &RequestContext<RoleServer>) -> String {
        let extensions = context
            .extensions
            .get::<::http::request::Parts>()
            .map(|parts| &parts.extensions);
        match self.transport {
            "http" | "sse" => principal::owner(extensions),
            other => other.to_string(),
        }
    }

    /// Who owns a task (or a whole output) this request starts or asks about: the checked
    /// principal; without one, a legacy session (its id the server issued); else this
    /// process's client over stdio, or nobody in particular over HTTP (then the task id
    /// alone names it).
    fn task_owner(&self, context: &RequestContext<RoleServer>) -> String {
        let owner = self.owner(context);
        if owner != principal::ANONYMOUS || is_modern(context) || self.stateless {
            return owner;
        }
        match self.origin(context).session {
            Some(session) => format!("session:{session}"),
            None => owner,
        }
    }

    /// `execute_code` for a client of protocol 2026-07-28, which takes no server-to-client
    /// requests: a confirmation is asked by an `input_required` result, before the run or
    /// with the run parked at the call, and the retry's answer applied (see [`approvals`]).
    async fn execute_code_by_rounds(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        let arguments = request.arguments.unwrap_or_default();
        let code = arguments
            .get("code")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_string();
        let owner = self.owner(&context);
        let answered = match &request.request_state {
            Some(state) => {
                match approvals::answer(
                    self.codemode.approvals(),
                    state,
                    request.input_responses.as_ref(),
                    &code,
                    &owner,
                ) {
                    Ok(approvals::Resumed::Before(tools, word)) => Some((tools, word)),
                    Ok(approvals::Resumed::Parked(run)) => {
                        return Ok(self.follow(*run, &code, &owner, &context).await);
                    }
                    Err(message) => {
                        return Ok(render::call_tool_result(&Execution::refused(
                            ProgramError::new(ErrorKind::Policy, message),
                        ))
                        .into());
                    }
                }
            }
            None => None,
        };
        let can_ask = context
            .client_capabilities()
            .is_some_and(|caps| caps.elicitation.is_some());
        if !can_ask && answered.is_none() {
            // Today's path: nobody can be asked, and the refusal says so.
            return self
                .run_program(arguments, context)
                .await
                .map(CallToolResponse::from);
        }
        match self.start_run(arguments, &context, answered) {
            Ok(run) => Ok(self.follow(run, &code, &owner, &context).await),
            Err(refusal) => Ok((*refusal).into()),
        }
    }

    /// Starts a modern request's run on its own task, so that it can outlive the request
    /// while it waits for an answer.
    fn start_run(
        &self,
        arguments: JsonObject,
        context: &RequestContext<RoleServer>,
        answered: Option<(String, crate::policy::Confirmation)>,
    ) -> Result<approvals::Running, Box<CallToolResult>> {
        let admitted = self.admit(arguments, context)?;
        let answer_chars = admitted.answer_chars;
        let scope = self
            .state_scope(admitted.state.as_deref(), context)
            .map_err(|message| Box::new(tool_error(message)))?;
        let (questions, asking) = tokio::sync::mpsc::unbounded_channel();
        let asked = Arc::new(std::sync::Mutex::new(None));
        let confirmer = approvals::AnsweringConfirmer {
            answered,
            asked: asked.clone(),
            questions,
            timeout: self.codemode.approval_timeout(),
            max_parked: self.max_waiting(),
            owner: self.owner(context),
            approvals: self.codemode.approvals().clone(),
        };
        let cancel = tokio_util::sync::CancellationToken::new();
        let options = RunOptions {
            timeout: admitted.timeout,
            typecheck: admitted.typecheck,
            progress: context
                .meta
                .get_progress_token()
                .map(|token| report_calls(Some((context.peer.clone(), token)), None)),
            cancel: Some(cancel.clone()),
            state_key: Some(scope.key.clone()),
            state_used: Some(scope.used.clone()),
            confirmer: Some(Arc::new(confirmer)),
            ..self.run_options(context)
        };
        let codemode = self.codemode.clone();
        // Holds the session's slot for as long as the run lasts, parked or not.
        let execution = tokio::spawn(async move {
            let execution = codemode.execute_with(&admitted.code, options).await;
            drop(admitted);
            execution
        });
        Ok(approvals::Running {
            execution,
            questions: asking,
            cancel,
            scope,
            asked,
            answer_chars,
        })
    }

    /// Runs that may wait for a user's answer at once: one execution slot at least stays
    /// free of them (with one slot, none may wait).
    pub(super) fn max_waiting(&self) -> usize {
        self.codemode.settings().concurrency.saturating_sub(1)
    }

    /// Follows a modern request's run: to its end (the result, or the question its
    /// pre-flight asks), or to a call it stops at to ask (parked, answered by
    /// `input_required`). The client cancelling the request stops the run.
    async fn follow(
        &self,
        mut run: approvals::Running,
        code: &str,
        owner: &str,
        context: &RequestContext<RoleServer>,
    ) -> CallToolResponse {
        let timeout = self.codemode.approval_timeout();
        let mut cancelled = false;
        let ended = loop {
            tokio::select! {
                ended = &mut run.execution => break ended,
                Some(asking) = run.questions.recv() => {
                    // Nobody will see a question the client cancelled, or one already
                    // given up on.
                    if cancelled || asking.is_settled() {
                        asking.refuse("the request was cancelled, so the user was not asked");
                        continue;
                    }
                    return approvals::park(self.codemode.approvals(), asking, run, code, owner, timeout).into();
                }
                () = context.ct.cancelled(), if !cancelled => {
                    cancelled = true;
                    run.cancel.cancel();
                }
            }
        };
        let execution = ended.unwrap_or_else(|err| {
            Execution::refused(ProgramError::new(
                ErrorKind::Runtime,
                format!("the run stopped without an answer ({err}); the server keeps serving, run the program again"),
            ))
        });
        let question = run.asked.lock().unwrap_or_else(|e| e.into_inner()).take();
        match question {
            Some(question) => {
                approvals::ask(self.codemode.approvals(), &question, code, owner, timeout).into()
            }
            None => render::call_tool_result_in(
                &execution,
                run.scope.handle_to_show(),
                &self.budget(run.answer_chars, owner),
            )
            .into(),
        }
    }

    /// Reads `execute_code`'s arguments and takes a slot of the session's; the refusal is
    /// the tool result to answer with.
    fn admit(
        &self,
        arguments: JsonObject,
        context: &RequestContext<RoleServer>,
    ) -> Result<Admitted, Box<CallToolResult>> {
        const EXPECTED: &str = "execute_code takes {\"code\": string, \"timeoutMs\"?: integer >= 1, \"typecheck\"?: boolean, \"state\"?: string, \"maxOutputChars\"?: integer >= 1}";
        let input: ExecuteCodeInput = parse_arguments(arguments, EXPECTED)
            .map_err(|message| Box::new(tool_error(message)))?;
        if input.timeout_ms == Some(0) {
            return Err(Box::new(tool_error(format!(
                "invalid argument timeoutMs: must be at least 1 (milliseconds), or omitted to use the server's limit; {EXPECTED}"
            ))));
        }
        let slot = match &self.session_slots {
            None => None,
            Some(slots) => Some(slots.clone().try_acquire_owned().map_err(|_| {
                Box::new(refusal(
                    "this session already runs as many executions at once as it may (--session-concurrency); nothing was run. Wait for one to finish, or combine work into fewer executions",
                ))
            })?),
        };
        let budget = self
            .tenancy(context)
            .answer_chars(self.codemode.answer_chars());
        Ok(Admitted {
            code: input.code,
            timeout: input.timeout_ms.map(Duration::from_millis),
            typecheck: input.typecheck,
            state: input.state,
            answer_chars: input.max_output_chars.map_or(budget, |asked| {
                usize::try_from(asked).unwrap_or(usize::MAX).min(budget)
            }),
            _slot: slot,
        })
    }

    /// How much of an answer `owner` reads, and where its whole output is kept.
    fn budget<'a>(&'a self, chars: usize, owner: &'a str) -> render::Budget<'a> {
        render::Budget {
            chars,
            keep: Some((self.codemode.outputs(), owner)),
        }
    }

    /// Who asks the user for a confirmation a run needs here: a legacy client by
    /// elicitation; a modern one (no server-to-client requests) is asked by
    /// `input_required` results instead (see [`Self::start_run`]), so here it cannot be.
    fn confirmer(&self, context: &RequestContext<RoleServer>) -> crate::policy::SharedConfirmer {
        Arc::new(confirm::ElicitingConfirmer {
            peer: context.peer.clone(),
            modern: is_modern(context),
            timeout: self.codemode.approval_timeout(),
        })
    }

    /// What every run of this session shares: who asks, how to confirm, how deep, which
    /// trace.
    fn run_options(&self, context: &RequestContext<RoleServer>) -> RunOptions {
        RunOptions {
            origin: Some(self.origin(context)),
            confirmer: Some(self.confirmer(context)),
            depth: context
                .meta
                .get(crate::upstream::DEPTH_META)
                .and_then(serde_json::Value::as_u64)
                .map_or(0, |depth| u32::try_from(depth).unwrap_or(u32::MAX)),
            traceparent: traceparent(context),
            tenancy: Some(self.tenancy(context)),
            // Windows are the principal's, by id: a token's name and an issuer's subject
            // that happen to be alike are not one principal.
            quota_key: context
                .extensions
                .get::<::http::request::Parts>()
                .and_then(|parts| parts.extensions.get::<Principal>())
                .map(|principal| principal.id().to_string()),
            ..RunOptions::default()
        }
    }

    /// What the overlays of `codemode.tenants` allow the principal of this request: over
    /// HTTP the one its token names (with its scopes), over stdio this process's client.
    fn tenancy(&self, context: &RequestContext<RoleServer>) -> Arc<Tenancy> {
        match self.transport {
            "http" | "sse" => {
                let principal = context
                    .extensions
                    .get::<::http::request::Parts>()
                    .and_then(|parts| parts.extensions.get::<Principal>());
                self.codemode.tenancy_of(
                    &principal.map(Principal::names).unwrap_or_default(),
                    principal.map_or(&[], |p| p.scopes()),
                )
            }
            _ => self
                .codemode
                .tenancy(Some(self.codemode.local_principal()), &[]),
        }
    }

    /// The catalog the principal of this request sees.
    fn catalog_for(&self, context: &RequestContext<RoleServer>) -> Arc<crate::catalog::Catalog> {
        self.codemode.catalog_for(&self.tenancy(context))
    }

    /// The server instructions for the principal of this request.
    fn instructions_for(&self, context: &RequestContext<RoleServer>) -> String {
        let tenancy = self.tenancy(context);
        self.instructions(
            &self.codemode.catalog_for(&tenancy),
            tenancy.is_unrestricted(),
        )
    }

    /// The server instructions for a principal who sees `catalog` (and may save skills).
    fn instructions(&self, catalog: &crate::catalog::Catalog, may_save_skills: bool) -> String {
        let mut instructions = INSTRUCTIONS.trim_end().to_string();
        if catalog.namespaces().iter().any(|n| {
            n.name == crate::state::NAMESPACE && n.transport == crate::catalog::BUILTIN_TRANSPORT
        }) {
            instructions.push_str(" `state.get/set/delete/list` keep small values between the executions of this session (without a session, over stateless HTTP, pass the `state` handle a result returns as execute_code's `state`).");
        }
        if self.codemode.skills().is_some()
            && catalog
                .namespaces()
                .iter()
                .any(|n| n.name == crate::skills::NAMESPACE)
        {
            instructions.push_str(if may_save_skills {
                " A program that worked and will be needed again can be saved with `save_skill`; later programs call it as `skills.<name>(args)`."
            } else {
                " Saved skills are called as `skills.<name>(args)` (`list_skills` lists them)."
            });
        }
        let down = describe::unavailable(catalog);
        if !down.is_empty() {
            instructions.push_str("\n\n");
            instructions.push_str(&down);
        }
        instructions
    }
}

/// Whether a request speaks protocol 2026-07-28 or later: no session, no server-to-client
/// requests.
fn is_modern(context: &RequestContext<RoleServer>) -> bool {
    context
        .protocol_version()
        .is_some_and(|v| v >= rmcp::model::ProtocolVersion::V_2026_07_28)
}

/// A `busy` refusal: nothing was run.
fn refusal(message: &str) -> CallToolResult {
    render::call_tool_result(&Execution::refused(ProgramError::new(
        ErrorKind::Busy,
        message,
    )))
}

/// Reports each tool call of a run as it ends: as a progress notification (with the
/// request's progress token) and as the task's status message (for a task).
fn report_calls(
    notify: Option<(rmcp::Peer<RoleServer>, rmcp::model::ProgressToken)>,
    task: Option<TaskContext>,
) -> tokio::sync::mpsc::UnboundedSender<CallRecord> {
    let (sender, mut calls) = tokio::sync::mpsc::unbounded_channel::<CallRecord>();
    tokio::spawn(async move {
        let mut done = 0u32;
        while let Some(call) = calls.recv().await {
            done += 1;
            let outcome = match &call.error {
                None => format!("tools.{} answered in {} ms", call.tool, call.ms),
                Some(error) => format!("tools.{} failed in {} ms: {error}", call.tool, call.ms),
            };
            if let Some(task) = &task {
                let plural = if done == 1 { "" } else { "s" };
                task.set_status_message(format!(
                    "running; {done} tool call{plural} so far, the last: {outcome}"
                ));
            }
            if let Some((peer, token)) = &notify {
                let notice = ProgressNotificationParam::new(token.clone(), f64::from(done))
                    .with_message(outcome);
                if peer.notify_progress(notice).await.is_err() && task.is_none() {
                    break;
                }
            }
        }
    });
    sender
}

#[tool_handler(router = self.tool_router)]
impl ServerHandler for CodeModeServer {
    // The instructions here are the server-wide view's; `initialize` and
    // `server/discover` answer with the asking principal's.
    fn get_info(&self) -> ServerConfig {
        let instructions = self.instructions(&self.codemode.catalog(), true);
        let capabilities = ServerCapabilities::builder()
            .enable_tools()
            .enable_tool_list_changed()
            .enable_resources()
            .enable_resources_list_changed()
            .enable_prompts();
        let capabilities = match &self.tasks {
            Some(_) => capabilities.enable_tasks().build(),
            None => capabilities.build(),
        };
        ServerConfig::new(capabilities)
            .with_server_info(Implementation::new(
                env!("CARGO_PKG_NAME"),
                env!("CARGO_PKG_VERSION"),
            ))
            .with_instructions(instructions)
    }

    async fn initialize(
        &self,
        request: InitializeRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<InitializeResult, McpError> {
        context.peer.set_peer_info(request.clone());
        let mut info = self.negotiate_initialize(&request)?;
        info.instructions = Some(self.instructions_for(&context));
        Ok(info)
    }

    async fn discover(
        &self,
        context: RequestContext<RoleServer>,
    ) -> Result<DiscoverResult, McpError> {
        let mut info = self.get_info();
        info.instructions = Some(self.instructions_for(&context));
        Ok(DiscoverResult::from_server_info(
            self.supported_protocol_versions().into_owned(),
            info,
        ))
    }

    async fn call_tool(
        &self,
        request: CallToolRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<CallToolResponse, McpError> {
        if request.name == "execute_code"
            && let Some(tasks) = &self.tasks
            && context
                .client_capabilities()
                .is_some_and(|caps| caps.supports_tasks())
        {
            let arguments = request.arguments.unwrap_or_default();
            return Ok(self.execute_code_as_task(tasks, arguments, &context));
        }
        if request.name == "execute_code" && is_modern(&context) {
            return self.execute_code_by_rounds(request, context).await;
        }
        if let Some(code) = self.skill_tool_program(&request.name, request.arguments.clone()) {
            let mut call = JsonObject::new();
            call.insert("code".into(), code.into());
            // A modern client is asked its confirmations the modern way here too.
            if is_modern(&context) {
                let mut request = request;
                request.arguments = Some(call);
                return self.execute_code_by_rounds(request, context).await;
            }
            return self
                .execute_code(Parameters(call), context)
                .await
                .map(CallToolResponse::from);
        }
        let call = rmcp::handler::server::tool::ToolCallContext::new(self, request, context);
        self.tool_router.call(call).await
    }

    async fn get_task(
        &self,
        request: GetTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetTaskResult, McpError> {
        let tasks = self.tasks.as_ref().ok_or_else(no_tasks)?;
        let owner = self.task_owner(&context);
        Ok(GetTaskResult::new(tasks.get(&owner, &request.task_id)?))
    }

    async fn update_task(
        &self,
        request: UpdateTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let tasks = self.tasks.as_ref().ok_or_else(no_tasks)?;
        let owner = self.task_owner(&context);
        tasks.update(&owner, &request.task_id, request.input_responses)
    }

    async fn cancel_task(
        &self,
        request: CancelTaskParams,
        context: RequestContext<RoleServer>,
    ) -> Result<(), McpError> {
        let tasks = self.tasks.as_ref().ok_or_else(no_tasks)?;
        let owner = self.task_owner(&context);
        tasks.cancel(&owner, &request.task_id)
    }

    async fn list_tools(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListToolsResult, McpError> {
        // Never cached: the execute_code description follows the catalog, which changes
        // without notice to a client that does not listen; and who may call what is the
        // policy's to say, per client.
        Ok(ListToolsResult::with_all_items(self.tools(&context))
            .with_ttl_ms(0)
            .with_cache_scope(CacheScope::Private))
    }

    // rmcp's HTTP transport looks tools up on every request, for their input schema only:
    // the catalog-dependent description is rendered by `list_tools` alone.
    fn get_tool(&self, name: &str) -> Option<Tool> {
        self.tool_router.get(name).cloned().or_else(|| {
            self.skill_tools(&self.codemode.catalog())
                .into_iter()
                .find(|t| t.name == name)
        })
    }

    async fn on_initialized(&self, context: NotificationContext<RoleServer>) {
        let mut changes = self.catalog_changes();
        let peer = context.peer;
        // Over HTTP sessions come and go: the task ends with its session, not at the next
        // change after it.
        let ended = self.session_ended.clone();
        tokio::spawn(async move {
            loop {
                tokio::select! {
                    changed = changes.changed() => if !changed { break },
                    () = ended.cancelled() => break,
                }
                if peer.notify_tool_list_changed().await.is_err()
                    || peer.notify_resource_list_changed().await.is_err()
                {
                    break;
                }
            }
        });
    }

    // 2026-07-28 clients have no session to be notified on: they open `subscriptions/listen`
    // and get the same changes on it.
    fn accepted_subscription_filter(
        &self,
        _requested: &SubscriptionFilter,
    ) -> Option<SubscriptionFilter> {
        Some(
            SubscriptionFilter::builder()
                .tools_list_changed()
                .resources_list_changed()
                .build(),
        )
    }

    async fn listen(&self, subscription: SubscriptionContext) -> Result<(), McpError> {
        let mut changes = self.catalog_changes();
        loop {
            tokio::select! {
                changed = changes.changed() => if !changed { return Ok(()) },
                () = subscription.cancelled() => return Ok(()),
            }
            let accepted = subscription.sink().accepted().clone();
            let notifications = [
                (
                    accepted.tools_list_changed,
                    ServerNotification::ToolListChangedNotification(Default::default()),
                ),
                (
                    accepted.resources_list_changed,
                    ServerNotification::ResourceListChangedNotification(Default::default()),
                ),
            ];
            for (wanted, notification) in notifications {
                if wanted == Some(true) && subscription.sink().send(notification).await.is_err() {
                    return Ok(());
                }
            }
        }
    }

    async fn list_resources(
        &self,
        _request: Option<PaginatedRequestParams>,
        context: RequestContext<RoleServer>,
    ) -> Result<ListResourcesResult, McpError> {
        Ok(resources::list(&self.catalog_for(&context)))
    }

    async fn read_resource(
        &self,
        request: ReadResourceRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<ReadResourceResponse, McpError> {
        let owner = self.task_owner(&context);
        if let Some(whole) = self.codemode.outputs().read(&owner, &request.uri) {
            return resources::whole_output(whole, request.uri).map(Into::into);
        }
        resources::read(&self.catalog_for(&context), request.uri).map(Into::into)
    }

    async fn list_prompts(
        &self,
        _request: Option<PaginatedRequestParams>,
        _context: RequestContext<RoleServer>,
    ) -> Result<ListPromptsResult, McpError> {
        Ok(prompts::list())
    }

    async fn get_prompt(
        &self,
        request: GetPromptRequestParams,
        context: RequestContext<RoleServer>,
    ) -> Result<GetPromptResponse, McpError> {
        prompts::get(&self.catalog_for(&context), &request.name).map(Into::into)
    }
}

impl CodeModeServer {
    /// The tools as served now to the principal of this request: `execute_code`'s
    /// description follows the catalog it sees and the URLs it may fetch.
    fn tools(&self, context: &RequestContext<RoleServer>) -> Vec<Tool> {
        let tenancy = self.tenancy(context);
        let catalog = self.codemode.catalog_for(&tenancy);
        let allowed = self
            .codemode
            .egress()
            .filter(|_| tenancy.may_fetch())
            .map(|egress| tenancy.shown_egress(egress.allowed()));
        let allowed: Option<Vec<&str>> = allowed
            .as_ref()
            .map(|urls| urls.iter().map(String::as_str).collect());
        let description = execute_code_description(&catalog, allowed.as_deref());
        // A narrowed principal may not change the shared skills: it is not offered to.
        let narrowed = !tenancy.is_unrestricted();
        self.tool_router
            .list_all()
            .into_iter()
            .filter(|tool| !(narrowed && matches!(&*tool.name, "save_skill" | "delete_skill")))
            .map(|mut tool| {
                if tool.name == "execute_code" {
                    tool.description = Some(description.clone().into());
                }
                tool
            })
            .chain(self.skill_tools(&catalog))
            .collect()
    }
}
