//! The engine seam: everything engine-specific lives in one folder per engine, behind
//! [`Engine::run`], which takes and returns only the plain data of the sandbox contract.

mod quickjs;

use serde::{Deserialize, Serialize};

use std::sync::Arc;

use super::{CancelHandle, RunOutcome, RunRequest, ToolHost};

/// The JS engines this binary can run programs on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum EngineKind {
    /// QuickJS-ng through rquickjs: ~0.1 ms to start, ~160 kB per isolate.
    #[default]
    Quickjs,
}

/// A JS engine that runs one program in one fresh isolate.
#[derive(Debug, Clone, Copy, Default)]
pub struct Engine {
    kind: EngineKind,
}

impl Engine {
    /// The engine of that kind.
    pub fn new(kind: EngineKind) -> Self {
        Self { kind }
    }

    /// Which engine this is.
    pub fn kind(&self) -> EngineKind {
        self.kind
    }

    /// Runs `request` in a fresh isolate that is dropped afterwards; `host` answers its
    /// tool calls. Must be awaited on a current-thread runtime: isolates are not `Send`.
    pub async fn run(
        &self,
        request: &RunRequest,
        cancel: &CancelHandle,
        host: Arc<dyn ToolHost>,
    ) -> RunOutcome {
        match self.kind {
            EngineKind::Quickjs => quickjs::run(request, cancel, host).await,
        }
    }
}
