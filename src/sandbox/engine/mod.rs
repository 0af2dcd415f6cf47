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
        self.run_in(None, request, cancel, host).await
    }

    /// The glue compiled for this engine, to hand to worker processes of this same binary
    /// (see [`Self::adopt_glue`]); `None` where the engine has no such form.
    pub fn compiled_glue(&self) -> Option<Vec<u8>> {
        match self.kind {
            EngineKind::Quickjs => quickjs::compiled_glue(),
        }
    }

    /// Uses glue compiled by [`Self::compiled_glue`] in the host (the same binary) instead
    /// of compiling it here. Call before the first isolate.
    pub fn adopt_glue(&self, compiled: Vec<u8>) {
        match self.kind {
            EngineKind::Quickjs => quickjs::adopt_glue(compiled),
        }
    }

    /// Makes an isolate ready for a program shaped like `template` (its bindings, `fetch`
    /// and limits; not its code), before that program arrives. `None` if it could not be
    /// made (the program then gets a fresh one, which reports why).
    pub async fn prepare(&self, template: &RunRequest) -> Option<WarmIsolate> {
        match self.kind {
            EngineKind::Quickjs => quickjs::prepare(template)
                .await
                .ok()
                .map(|warm| WarmIsolate(Warm::Quickjs(warm))),
        }
    }

    /// [`Self::run`] in `warm`, an isolate made ahead by [`Self::prepare`], when it was
    /// made for a program of this shape; otherwise in one made now. Either way the isolate
    /// runs this one program and is dropped.
    pub async fn run_in(
        &self,
        warm: Option<WarmIsolate>,
        request: &RunRequest,
        cancel: &CancelHandle,
        host: Arc<dyn ToolHost>,
    ) -> RunOutcome {
        self.run_then_retire(warm, request, cancel, host).await.0
    }

    /// [`Self::run_in`], handing back the used isolate instead of dropping it: freeing it
    /// costs more than a small program, so the caller answers first and drops it after.
    pub async fn run_then_retire(
        &self,
        warm: Option<WarmIsolate>,
        request: &RunRequest,
        cancel: &CancelHandle,
        host: Arc<dyn ToolHost>,
    ) -> (RunOutcome, RetiredIsolate) {
        match self.kind {
            EngineKind::Quickjs => {
                let warm = warm.map(|WarmIsolate(Warm::Quickjs(warm))| warm);
                let (outcome, retired) = quickjs::run(request, cancel, host, warm).await;
                (
                    outcome,
                    RetiredIsolate {
                        _held: Retired::Quickjs { _held: retired },
                    },
                )
            }
        }
    }
}

/// A used isolate waiting to be dropped (see [`Engine::run_then_retire`]).
pub struct RetiredIsolate {
    _held: Retired,
}

impl std::fmt::Debug for RetiredIsolate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RetiredIsolate")
    }
}

/// Held only to be dropped.
enum Retired {
    Quickjs { _held: quickjs::Retired },
}

/// An isolate made before its program, never used (see [`Engine::prepare`]). Not `Send`:
/// it stays on the thread that made it.
#[derive(Debug)]
pub struct WarmIsolate(Warm);

#[derive(Debug)]
enum Warm {
    Quickjs(quickjs::WarmIsolate),
}
