//! Building a [`CodeMode`]: each part made once, in the order a bad config is found
//! soonest (rules before upstreams are connected).

use std::{path::PathBuf, sync::Arc};

use super::{CodeMode, Parts};
use crate::{
    audit::{AuditError, AuditLog},
    catalog::{BuiltinTool, Builtins, LearnedTypes, LiveCatalog},
    config::{Config, ConfigError, LimitSettings},
    egress::{Egress, EgressError},
    executor::{Executor, ExecutorSettings},
    isolation::{Isolation, IsolationError, LockdownReport, PoolSettings, WorkerPool},
    oversight::{Oversight, TraceError, Tracing},
    policy::{Policy, PolicyError},
    sandbox::{Engine, EngineKind},
    skills::{SkillError, SkillStore},
    tenants::{
        TenantError, Tenants,
        quota::{QuotaError, Quotas},
    },
    typecheck::Checker,
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
    /// A `codemode.tenants` overlay is not valid.
    #[error(transparent)]
    Tenant(#[from] TenantError),
    /// The quota windows' database could not be opened.
    #[error(transparent)]
    Quota(#[from] QuotaError),
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
        let state_key = self.add_stores()?;
        let skills = SkillStore::open(&self.config.codemode.skills)?;
        if let Some(skills) = &skills {
            self.builtins
                .add_source(crate::skills::NAMESPACE, skills.clone());
        }
        for (namespace, _) in self.builtins.namespaces() {
            if self.config.upstreams.iter().any(|u| u.name == namespace) {
                return Err(EmbedError::NamespaceTaken(namespace.to_string()));
            }
        }
        self.limits.validate("the embedding program's limits")?;
        let limits = self.limits.over(self.config.codemode.limits);
        let config = &self.config;
        // Checked before connecting: a bad rule must not wait for the upstreams first.
        let policy = Policy::new(&config.codemode.policy)?;
        let tenants = Arc::new(Tenants::new(
            &config.codemode.tenants,
            &limits.limits(),
            &config.codemode.quotas,
        )?);
        let egress =
            Egress::new(&config.codemode.egress, &|name| std::env::var(name).ok())?.map(Arc::new);
        let mut telemetry = config.codemode.telemetry.clone();
        if let Some(endpoint) = self.otlp_endpoint.take() {
            telemetry.otlp_endpoint = Some(endpoint);
        }
        let tracing = Tracing::from_settings(&telemetry)?;
        let checker = type_checker(config)?;
        self.check_worker_reuse()?;
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
        let builtins = std::mem::replace(&mut self.builtins, Builtins::none());
        let config = &self.config;
        let tools = Arc::new(LiveCatalog::learning(
            upstreams.clone(),
            Arc::new(builtins),
            policy,
            Arc::new(learned),
        ));
        let settings = executor_settings(self.engine_kind(), &limits);
        let (pool, lockdown) = self.start_workers(&settings).await?;
        let oversight = Arc::new(Oversight::new(
            &config.codemode.anomalies,
            &telemetry,
            tracing,
        ));
        let audit = self.open_audit(&oversight).await?;
        let executor = match &pool {
            Some(pool) => Executor::with_workers(settings, tools, pool.clone()),
            None => Executor::with_tools(settings, tools).map_err(EmbedError::Threads)?,
        };
        let mut executor = executor
            .with_egress(egress.clone())
            .with_typecheck(checker, config.codemode.typecheck.by_default)
            .with_oversight(oversight.clone())
            .with_tenants(tenants)
            .with_quotas(Arc::new(match &config.codemode.quotas.path {
                Some(path) => Quotas::open(path)?,
                None => Quotas::in_memory(),
            }));
        if let Some(audit) = &audit {
            executor = executor.with_audit(audit.clone());
        }
        let executor = Arc::new(executor);
        if let Some(skills) = &skills {
            skills.run_on(&executor);
        }
        Ok(CodeMode {
            executor,
            parts: Parts {
                settings,
                upstreams,
                audit,
                oversight,
                egress,
                pool,
            },
            skills,
            lockdown,
            tasks: config.codemode.tasks,
            approval_timeout: config.codemode.policy.approval_timeout(),
            local_principal: config
                .codemode
                .principal
                .clone()
                .unwrap_or_else(|| crate::server::LOCAL_PRINCIPAL.to_string()),
            state_key: Arc::new(state_key.unwrap_or_else(crate::digest::random_bytes)),
            approvals: Arc::default(),
            answer_chars: limits.answer_chars(),
            outputs: Arc::new(crate::server::Outputs::new(limits.output_keeping())),
        })
    }

    /// Adds the `state` tools where session state is on; the key its handles are signed
    /// with.
    fn add_stores(&mut self) -> Result<Option<[u8; 32]>, EmbedError> {
        if !self.config.codemode.state.enabled {
            return Ok(None);
        }
        let state = crate::state::SessionState::open(self.config.codemode.state.clone())?;
        for tool in state.tools() {
            self.builtins.add(crate::state::NAMESPACE, tool);
        }
        Ok(Some(state.signing_key()))
    }

    fn engine_kind(&self) -> EngineKind {
        self.engine
            .or(self.config.codemode.engine)
            .unwrap_or_default()
    }

    fn check_worker_reuse(&self) -> Result<(), EmbedError> {
        let engine = self.engine_kind();
        match Engine::new(engine).max_worker_reuse() {
            Some(most) if self.worker_reuse > most => {
                Err(EmbedError::Config(ConfigError::Invalid {
                    origin: "the worker settings".into(),
                    path: "--worker-reuse".into(),
                    message: format!(
                        "{} programs per worker is more than the {} engine allows ({most}: its backend makes a limited number of runtimes per thread); use at most {most}",
                        self.worker_reuse,
                        engine.as_str()
                    ),
                }))
            }
            _ => Ok(()),
        }
    }

    /// The locked-down worker pool, with [`Isolation::Process`].
    async fn start_workers(
        &self,
        settings: &ExecutorSettings,
    ) -> Result<(Option<WorkerPool>, Option<LockdownReport>), EmbedError> {
        if self.isolation == Isolation::None {
            return Ok((None, None));
        }
        let program = match self.worker_program.clone() {
            Some(program) => program,
            None => std::env::current_exe()
                .map_err(|e| EmbedError::Isolation(IsolationError::Spawn(e)))?,
        };
        // A worker's CPU limit must allow the longest run it may get: a task's.
        let mut longest = settings.limits;
        let tasks = &self.config.codemode.tasks;
        if tasks.enabled {
            longest.timeout = longest.timeout.max(tasks.timeout());
        }
        let (pool, report) = WorkerPool::start(PoolSettings {
            program,
            engine: self.engine_kind(),
            limits: longest,
            size: settings.concurrency,
            reuse: self.worker_reuse,
            warm: settings.warm_isolates > 0,
            spin: settings.spin,
            time_zone: self.config.codemode.time_zone().to_string(),
        })
        .await?;
        Ok((Some(pool), Some(report)))
    }

    /// The audit log, where a path is set.
    async fn open_audit(
        &self,
        oversight: &Arc<Oversight>,
    ) -> Result<Option<Arc<AuditLog>>, EmbedError> {
        let config = &self.config.codemode;
        let Some(path) = self.audit_path.clone().or(config.audit.path.clone()) else {
            return Ok(None);
        };
        let audit = Arc::new(AuditLog::open(path, config.audit.max_bytes)?);
        // Hosts fetched from before a restart are not new. Reading the log back is only
        // worth it when that flag is on.
        if config.anomalies.new_egress_hosts {
            let (earlier, seen) = (audit.clone(), oversight.clone());
            let _ = tokio::task::spawn_blocking(move || {
                seen.anomalies().seen_hosts(&earlier.read_live());
            })
            .await;
        }
        Ok(Some(audit))
    }
}

/// The executor's settings: the configured limits over the defaults.
fn executor_settings(engine: EngineKind, limits: &LimitSettings) -> ExecutorSettings {
    let defaults = ExecutorSettings::default();
    let count = |n: u64| usize::try_from(n).unwrap_or(usize::MAX);
    ExecutorSettings {
        engine: Engine::new(engine),
        limits: limits.limits(),
        concurrency: limits.concurrency.map_or(defaults.concurrency, count),
        queue: limits.queue.map_or(defaults.queue, count),
        warm_isolates: limits.warm_isolates.map_or(usize::MAX, count),
        spin: limits
            .spin_micros
            .map_or(defaults.spin, std::time::Duration::from_micros),
    }
}

/// The type checker, where one is found; an error where the config asks for one and none
/// is there.
fn type_checker(config: &Config) -> Result<Option<Checker>, EmbedError> {
    let settings = &config.codemode.typecheck;
    let checker = Checker::locate(settings);
    if checker.is_none() && (settings.by_default || settings.tsc.is_some()) {
        return Err(EmbedError::Config(ConfigError::Invalid {
            origin: "the type checker".into(),
            path: "codemode.typecheck.tsc".into(),
            message: match &settings.tsc {
                Some(tsc) => format!("{} is not a file; point it at TypeScript's tsc (npm install typescript@7: node_modules/.bin/tsc)", tsc.display()),
                None => "codemode.typecheck.default is on, but there is no tsc on PATH; install TypeScript 7 (npm install typescript@7) and set this to its tsc".into(),
            },
        }));
    }
    Ok(checker)
}
