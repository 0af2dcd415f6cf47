//! The library API for programs that embed code mode (agent loops, services): build a
//! [`CodeMode`] from a config, with tools of your own written in Rust, then list its
//! catalog and declarations and run programs. The MCP server in this crate is built on
//! this API and nothing else.

use std::{path::PathBuf, sync::Arc};

use crate::{
    audit::{AuditError, AuditLog},
    catalog::{BuiltinTool, Builtins, Catalog, LearnedTypes, LiveCatalog},
    config::{Config, ConfigError, LimitSettings, TaskSettings},
    egress::{Egress, EgressError},
    executor::{Execution, Executor, ExecutorSettings, RunOptions},
    isolation::{Isolation, IsolationError, LockdownReport, PoolSettings, WorkerPool},
    oversight::{Oversight, TraceError, Tracing},
    policy::{Policy, PolicyError},
    sandbox::{Engine, EngineKind},
    skills::{SkillError, SkillStore},
    typegen,
    upstream::Upstreams,
};

/// Why a [`CodeMode`] could not be built.
#[derive(Debug, thiserror::Error)]
pub enum EmbedError {
    /// The config (file or value) is invalid.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// A built-in namespace has the name of an upstream server.
    #[error(
        "the built-in namespace \"{0}\" has the name of a server in mcpServers; rename one of them"
    )]
    NamespaceTaken(String),
    /// The isolate threads could not start.
    #[error("could not start the isolate threads: {0}")]
    Threads(std::io::Error),
    /// The session state database could not be opened.
    #[error(transparent)]
    State(#[from] crate::state::StateError),
    /// The skills directory could not be made.
    #[error(transparent)]
    Skills(#[from] SkillError),
    /// Worker processes could not be started or locked down.
    #[error(transparent)]
    Isolation(#[from] IsolationError),
    /// The audit log could not be opened.
    #[error(transparent)]
    Audit(#[from] AuditError),
    /// A policy rule is not valid.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// An egress rule is not valid.
    #[error(transparent)]
    Egress(#[from] EgressError),
    /// The trace exporter could not be set up.
    #[error(transparent)]
    Telemetry(#[from] TraceError),
}

/// Builds a [`CodeMode`].
#[derive(Debug)]
pub struct CodeModeBuilder {
    config: Config,
    limits: LimitSettings,
    engine: Option<EngineKind>,
    isolation: Isolation,
    worker_program: Option<PathBuf>,
    worker_reuse: u32,
    builtins: Builtins,
    audit_path: Option<PathBuf>,
    otlp_endpoint: Option<String>,
}

impl Default for CodeModeBuilder {
    fn default() -> Self {
        Self {
            config: Config::default(),
            limits: LimitSettings::default(),
            engine: None,
            isolation: Isolation::None,
            worker_program: None,
            worker_reuse: 1,
            builtins: Builtins::none(),
            audit_path: None,
            otlp_endpoint: None,
        }
    }
}

impl CodeModeBuilder {
    /// The config: upstream servers (`mcpServers`) and the `codemode` section.
    pub fn config(mut self, config: Config) -> Self {
        self.config = config;
        self
    }

    /// Reads the config from a file (Claude Desktop's format plus a `codemode` section).
    pub fn config_file(self, path: impl AsRef<std::path::Path>) -> Result<Self, EmbedError> {
        Ok(self.config(Config::load(path.as_ref())?))
    }

    /// Limits that override the config's (unset fields keep the config's value).
    pub fn limits(mut self, limits: LimitSettings) -> Self {
        self.limits = limits;
        self
    }

    /// The JS engine (overrides the config's `codemode.engine`; default QuickJS).
    pub fn engine(mut self, engine: EngineKind) -> Self {
        self.engine = Some(engine);
        self
    }

    /// Where programs run. [`Isolation::Process`] needs a binary that starts a worker
    /// when its first argument is [`crate::isolation::WORKER_COMMAND`] (the
    /// `codemode-mcp` binary does; so does any binary whose `main` calls
    /// [`crate::isolation::worker_main`] then); see [`Self::worker_program`].
    pub fn isolation(mut self, isolation: Isolation) -> Self {
        self.isolation = isolation;
        self
    }

    /// The binary started as a worker (default: the running one).
    pub fn worker_program(mut self, program: impl Into<PathBuf>) -> Self {
        self.worker_program = Some(program.into());
        self
    }

    /// Programs one worker runs before it is replaced (default 1).
    pub fn worker_reuse(mut self, runs: u32) -> Self {
        self.worker_reuse = runs.max(1);
        self
    }

    /// Exports traces over OTLP/HTTP to `endpoint` (overrides the config's
    /// `codemode.telemetry.otlpEndpoint`).
    pub fn otlp_endpoint(mut self, endpoint: impl Into<String>) -> Self {
        self.otlp_endpoint = Some(endpoint.into());
        self
    }

    /// Records every execution in the hash-chained audit log at `path` (overrides the
    /// config's `codemode.audit.path`).
    pub fn audit_log(mut self, path: impl Into<PathBuf>) -> Self {
        self.audit_path = Some(path.into());
        self
    }

    /// Adds a tool written in Rust, called from programs as `tools.<namespace>.<name>`.
    pub fn tool(mut self, namespace: impl Into<String>, tool: BuiltinTool) -> Self {
        self.builtins.add(namespace, tool);
        self
    }

    /// Starts the upstreams (waiting for each one's first connection, at most the
    /// connect timeout; a slow one joins later), the isolate threads or worker pool, and
    /// returns the host. Needs a tokio runtime.
    pub async fn build(mut self) -> Result<CodeMode, EmbedError> {
        let config = self.config;
        let mut state_key = None;
        if config.codemode.state.enabled {
            let state = crate::state::SessionState::open(config.codemode.state.clone())?;
            state_key = Some(state.signing_key());
            for tool in state.tools() {
                self.builtins.add(crate::state::NAMESPACE, tool);
            }
        }
        let skills = SkillStore::open(&config.codemode.skills)?;
        if let Some(skills) = &skills {
            self.builtins
                .add_source(crate::skills::NAMESPACE, skills.clone());
        }
        for (namespace, _) in self.builtins.namespaces() {
            if config.upstreams.iter().any(|u| u.name == namespace) {
                return Err(EmbedError::NamespaceTaken(namespace.to_string()));
            }
        }
        self.limits.validate("the embedding program's limits")?;
        let limits = self.limits.over(config.codemode.limits);
        // Checked before connecting: a bad rule must not wait for the upstreams first.
        let policy = Policy::new(&config.codemode.policy)?;
        let egress =
            Egress::new(&config.codemode.egress, &|name| std::env::var(name).ok())?.map(Arc::new);
        let mut telemetry = config.codemode.telemetry.clone();
        if let Some(endpoint) = self.otlp_endpoint {
            telemetry.otlp_endpoint = Some(endpoint);
        }
        let tracing = Tracing::from_settings(&telemetry)?;
        for warning in &config.warnings {
            tracing::warn!(target: "config", "{warning}");
        }
        for skipped in &config.skipped {
            tracing::warn!(target: "upstream", "[{}] {}", skipped.name, skipped.reason);
        }
        let upstreams = Upstreams::connect(&config.upstreams, config.codemode.upstream).await;
        let learned = match &config.codemode.learned_types.path {
            Some(path) => LearnedTypes::persisted(path),
            None => LearnedTypes::in_memory(),
        };
        let tools = Arc::new(LiveCatalog::learning(
            upstreams,
            Arc::new(self.builtins),
            policy,
            Arc::new(learned),
        ));
        let engine = self.engine.or(config.codemode.engine).unwrap_or_default();
        if let Some(most) = Engine::new(engine).max_worker_reuse()
            && self.worker_reuse > most
        {
            return Err(EmbedError::Config(ConfigError::Invalid {
                origin: "the worker settings".into(),
                path: "--worker-reuse".into(),
                message: format!(
                    "{} programs per worker is more than the {} engine allows ({most}: its backend makes a limited number of runtimes per thread); use at most {most}",
                    self.worker_reuse,
                    engine.as_str()
                ),
            }));
        }
        let defaults = ExecutorSettings::default();
        let settings = ExecutorSettings {
            engine: Engine::new(engine),
            limits: limits.limits(),
            concurrency: limits.concurrency.map_or(defaults.concurrency, |n| {
                usize::try_from(n).unwrap_or(usize::MAX)
            }),
            queue: limits
                .queue
                .map_or(defaults.queue, |n| usize::try_from(n).unwrap_or(usize::MAX)),
            warm_isolates: limits
                .warm_isolates
                .map_or(usize::MAX, |n| usize::try_from(n).unwrap_or(usize::MAX)),
            spin: limits
                .spin_micros
                .map_or(defaults.spin, std::time::Duration::from_micros),
        };
        let (executor, lockdown) = match self.isolation {
            Isolation::None => (
                Executor::with_tools(settings, tools).map_err(EmbedError::Threads)?,
                None,
            ),
            Isolation::Process => {
                let program = match self.worker_program {
                    Some(program) => program,
                    None => std::env::current_exe()
                        .map_err(|e| EmbedError::Isolation(IsolationError::Spawn(e)))?,
                };
                // A worker's CPU limit must allow the longest run it may get: a task's.
                let mut longest = settings.limits;
                if config.codemode.tasks.enabled {
                    longest.timeout = longest.timeout.max(config.codemode.tasks.timeout());
                }
                let (pool, report) = WorkerPool::start(PoolSettings {
                    program,
                    engine,
                    limits: longest,
                    size: settings.concurrency,
                    reuse: self.worker_reuse,
                    warm: settings.warm_isolates > 0,
                    spin: settings.spin,
                    time_zone: config.codemode.time_zone().to_string(),
                })
                .await?;
                (Executor::with_workers(settings, tools, pool), Some(report))
            }
        };
        let oversight = Arc::new(Oversight::new(
            &config.codemode.anomalies,
            &telemetry,
            tracing,
        ));
        let checker = crate::typecheck::Checker::locate(&config.codemode.typecheck);
        if checker.is_none()
            && (config.codemode.typecheck.by_default || config.codemode.typecheck.tsc.is_some())
        {
            return Err(EmbedError::Config(ConfigError::Invalid {
                origin: "the type checker".into(),
                path: "codemode.typecheck.tsc".into(),
                message: match &config.codemode.typecheck.tsc {
                    Some(tsc) => format!("{} is not a file; point it at TypeScript's tsc (npm install typescript@7: node_modules/.bin/tsc)", tsc.display()),
                    None => "codemode.typecheck.default is on, but there is no tsc on PATH; install TypeScript 7 (npm install typescript@7) and set this to its tsc".into(),
                },
            }));
        }
        let executor = executor
            .with_egress(egress)
            .with_typecheck(checker, config.codemode.typecheck.by_default);
        let audit_path = self.audit_path.or(config.codemode.audit.path.clone());
        let executor = match audit_path {
            Some(path) => {
                let audit = Arc::new(AuditLog::open(path, config.codemode.audit.max_bytes)?);
                // Hosts fetched from before a restart are not new. Reading the log back is
                // only worth it when that flag is on.
                if config.codemode.anomalies.new_egress_hosts {
                    let (earlier, seen) = (audit.clone(), oversight.clone());
                    let _ = tokio::task::spawn_blocking(move || {
                        seen.anomalies().seen_hosts(&earlier.read_live());
                    })
                    .await;
                }
                executor.with_audit(audit)
            }
            None => executor,
        };
        let executor = Arc::new(executor.with_oversight(oversight));
        if let Some(skills) = &skills {
            skills.run_on(&executor);
        }
        Ok(CodeMode {
            executor,
            skills,
            lockdown,
            tasks: config.codemode.tasks,
            approval_timeout: config.codemode.policy.approval_timeout(),
            state_key: Arc::new(state_key.unwrap_or_else(crate::digest::random_bytes)),
            approvals: Arc::default(),
            answer_chars: limits.answer_chars(),
            outputs: Arc::new(crate::server::Outputs::new(limits.output_keeping())),
        })
    }
}

/// A code-mode host: the catalog of tools (upstream and built-in) and the executor that
/// runs programs against it.
#[derive(Debug, Clone)]
pub struct CodeMode {
    executor: Arc<Executor>,
    lockdown: Option<LockdownReport>,
    tasks: TaskSettings,
    approval_timeout: std::time::Duration,
    /// Signs `state.*` handles (see [`crate::state::SessionState::signing_key`]).
    state_key: Arc<[u8; 32]>,
    /// Questions waiting for answers, and the runs waiting on them.
    approvals: Arc<crate::server::Approvals>,
    /// Characters of an answer a model reads (`codemode.limits.outputChars`).
    answer_chars: usize,
    /// Whole outputs of answers the budget cut.
    outputs: Arc<crate::server::Outputs>,
    skills: Option<Arc<SkillStore>>,
}

impl CodeMode {
    /// A builder with no config, no tools, in-process isolation.
    pub fn builder() -> CodeModeBuilder {
        CodeModeBuilder::default()
    }

    /// The tools programs can call now.
    pub fn catalog(&self) -> Arc<Catalog> {
        self.executor.tools().current()
    }

    /// The TypeScript declarations of every tool, as a model should see them.
    pub fn declarations(&self) -> String {
        typegen::all_declarations(&self.catalog())
    }

    /// Runs `code` with the configured limits. Dropping the future cancels the run.
    pub async fn execute(&self, code: &str) -> Execution {
        self.executor.execute(code, None).await
    }

    /// Runs `code` with options: a lower timeout, a progress channel receiving each tool
    /// call as it finishes, a cancellation token.
    /// A run's clock stands still while its user is asked, for the approval timeout at
    /// most (unless `options` says otherwise).
    pub async fn execute_with(&self, code: &str, mut options: RunOptions) -> Execution {
        options.max_hold.get_or_insert(self.approval_timeout);
        self.executor.execute_with(code, options).await
    }

    /// Changes whenever an upstream's tools or state change (the catalog follows).
    pub fn subscribe_changes(&self) -> tokio::sync::watch::Receiver<u64> {
        self.executor.tools().upstreams().subscribe()
    }

    /// What the worker lockdown achieved, with [`Isolation::Process`].
    pub fn lockdown(&self) -> Option<&LockdownReport> {
        self.lockdown.as_ref()
    }

    /// The saved skills, where `codemode.skills.path` is set.
    pub fn skills(&self) -> Option<&Arc<SkillStore>> {
        self.skills.as_ref()
    }

    /// How `execute_code` runs as an MCP task.
    pub fn tasks(&self) -> &TaskSettings {
        &self.tasks
    }

    /// The key `state.*` handles are signed with.
    pub fn state_signing_key(&self) -> &[u8; 32] {
        &self.state_key
    }

    /// Characters of one execution's answer a model reads (`codemode.limits.outputChars`).
    pub fn answer_chars(&self) -> usize {
        self.answer_chars
    }

    /// Whole outputs of answers the budget cut, by execution.
    pub(crate) fn outputs(&self) -> &Arc<crate::server::Outputs> {
        &self.outputs
    }

    /// The questions this server's runs wait on, shared by all its handlers.
    pub(crate) fn approvals(&self) -> &Arc<crate::server::Approvals> {
        &self.approvals
    }

    /// How long a confirmation waits for the user (`codemode.policy.approvalTimeoutMs`).
    pub fn approval_timeout(&self) -> std::time::Duration {
        self.approval_timeout
    }

    /// The executor underneath: settings, shutdown, the live catalog and its upstreams.
    /// What a server needs of it is offered below; this is for embedders that go further.
    pub fn executor(&self) -> &Arc<Executor> {
        &self.executor
    }

    /// The executor's settings (engine, limits, concurrency).
    pub fn settings(&self) -> &crate::executor::ExecutorSettings {
        self.executor.settings()
    }

    /// The audit log, when one is kept.
    pub fn audit(&self) -> Option<&Arc<crate::audit::AuditLog>> {
        self.executor.audit()
    }

    /// Metrics, traces, anomaly flags and the recent executions.
    pub fn oversight(&self) -> &Arc<crate::oversight::Oversight> {
        self.executor.oversight()
    }

    /// What `fetch` may reach, when programs get it.
    pub fn egress(&self) -> Option<&Arc<crate::egress::Egress>> {
        self.executor.egress()
    }

    /// The worker processes, with process isolation.
    pub fn worker_pool(&self) -> Option<&crate::isolation::WorkerPool> {
        self.executor.worker_pool()
    }

    /// The upstream servers and their state.
    pub fn upstreams(&self) -> &Arc<crate::upstream::Upstreams> {
        self.executor.tools().upstreams()
    }

    /// Takes no new executions (those running go on).
    pub fn close(&self) {
        self.executor.close();
    }

    /// Stops every execution still running (they answer `cancelled`).
    pub fn stop_all(&self) {
        self.executor.stop_all();
    }
}
