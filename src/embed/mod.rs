//! The library API for programs that embed code mode (agent loops, services): build a
//! [`CodeMode`] from a config, with tools of your own written in Rust, then list its
//! catalog and declarations and run programs. The MCP server in this crate is built on
//! this API and nothing else.
//!
//! [`CodeMode`] is the composition root: [`build`] makes each part once (the catalog and
//! its upstreams, the policy, egress, the worker pool, oversight, the audit log), hands the
//! executor what a run needs of them, and keeps them itself, so the face (the MCP server,
//! the console, the CLI) asks the host and never reaches through the executor.

mod build;

use std::sync::Arc;

pub use build::{CodeModeBuilder, EmbedError};

use crate::{
    audit::AuditLog,
    catalog::Catalog,
    config::TaskSettings,
    egress::Egress,
    executor::{Execution, Executor, ExecutorSettings, RunOptions},
    isolation::{LockdownReport, WorkerPool},
    oversight::Oversight,
    skills::SkillStore,
    tenants::Tenancy,
    typegen,
    upstream::Upstreams,
};

/// A code-mode host: the catalog of tools (upstream and built-in) and the executor that
/// runs programs against it.
#[derive(Debug, Clone)]
pub struct CodeMode {
    executor: Arc<Executor>,
    /// The parts beside the executor, shared with it where a run needs them.
    parts: Parts,
    lockdown: Option<LockdownReport>,
    tasks: TaskSettings,
    approval_timeout: std::time::Duration,
    /// The name of this process's own client (`codemode.principal`).
    local_principal: String,
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

/// What the host is made of besides the executor: each made once by [`build`].
#[derive(Debug, Clone)]
struct Parts {
    settings: ExecutorSettings,
    upstreams: Arc<Upstreams>,
    audit: Option<Arc<AuditLog>>,
    oversight: Arc<Oversight>,
    egress: Option<Arc<Egress>>,
    pool: Option<WorkerPool>,
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

    /// The catalog a principal under `tenancy` sees (see [`crate::tenants`]).
    pub fn catalog_for(&self, tenancy: &Tenancy) -> Arc<Catalog> {
        self.executor.tools().current_for(tenancy)
    }

    /// What the overlays of `codemode.tenants` make of the principal named `principal`
    /// whose token carries `scopes`.
    pub fn tenancy(&self, principal: Option<&str>, scopes: &[String]) -> Arc<Tenancy> {
        self.executor.tenants().resolve(principal, scopes)
    }

    /// [`Self::tenancy`] of a principal known by several names (see
    /// [`crate::tenants::Tenants::resolve_any`]).
    pub fn tenancy_of(&self, names: &[&str], scopes: &[String]) -> Arc<Tenancy> {
        self.executor.tenants().resolve_any(names, scopes)
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
        self.parts.upstreams.subscribe()
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

    /// The principal of this process's own client: over stdio, and `codemode-mcp run`.
    pub fn local_principal(&self) -> &str {
        &self.local_principal
    }

    /// The executor underneath. What a server needs is offered by the host itself; this
    /// is for embedders that go further.
    pub fn executor(&self) -> &Arc<Executor> {
        &self.executor
    }

    /// The executor's settings (engine, limits, concurrency).
    pub fn settings(&self) -> &ExecutorSettings {
        &self.parts.settings
    }

    /// The audit log, when one is kept.
    pub fn audit(&self) -> Option<&Arc<AuditLog>> {
        self.parts.audit.as_ref()
    }

    /// Metrics, traces, anomaly flags and the recent executions.
    pub fn oversight(&self) -> &Arc<Oversight> {
        &self.parts.oversight
    }

    /// What `fetch` may reach, when programs get it.
    pub fn egress(&self) -> Option<&Arc<Egress>> {
        self.parts.egress.as_ref()
    }

    /// The worker processes, with process isolation.
    pub fn worker_pool(&self) -> Option<&WorkerPool> {
        self.parts.pool.as_ref()
    }

    /// The upstream servers and their state.
    pub fn upstreams(&self) -> &Arc<Upstreams> {
        &self.parts.upstreams
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
