//! The engine seam: everything engine-specific lives in one folder per engine, behind
//! [`Engine::run`], which takes and returns only the plain data of the sandbox contract.

#[cfg(any(feature = "deno", feature = "v8"))]
mod deno;
#[cfg(feature = "quickjs")]
mod quickjs;
mod settle;

#[cfg(all(feature = "deno", feature = "v8"))]
compile_error!(
    "features `deno` and `v8` exclude each other (deno_core has one backend per build): `--no-default-features --features deno` for its QuickJS-ng backend, or `--features v8` for real V8"
);
#[cfg(all(feature = "deno", feature = "quickjs"))]
compile_error!(
    "feature `deno` (deno_core on its QuickJS-ng backend) links QuickJS-ng's C symbols a second time beside the default engine's: build it alone with `--no-default-features --features deno` (or use `--features v8` for deno_core on real V8 beside the default engine)"
);
#[cfg(not(any(feature = "quickjs", feature = "deno", feature = "v8")))]
compile_error!(
    "no JS engine: build with the default features, `--no-default-features --features deno`, or `--features v8`"
);

use serde::{Deserialize, Serialize};

use std::sync::Arc;

use super::{CancelHandle, RunOutcome, RunRequest, ToolHost};

/// The JS engines this binary can run programs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum EngineKind {
    /// QuickJS-ng through rquickjs: ~0.1 ms to start, ~160 kB per isolate.
    #[cfg(feature = "quickjs")]
    Quickjs,
    /// deno_core: on real V8 when built with the `v8` feature, on its QuickJS-ng backend
    /// with `deno`, where an isolate takes ~5 ms to start from the snapshot and ~2.7 MB,
    /// and ~0.8 MB of each stays in the process for good (use process isolation).
    #[cfg(any(feature = "deno", feature = "v8"))]
    Deno,
}

impl Default for EngineKind {
    /// QuickJS where the binary has it, else deno_core.
    fn default() -> Self {
        #[cfg(feature = "quickjs")]
        return Self::Quickjs;
        #[cfg(not(feature = "quickjs"))]
        return Self::Deno;
    }
}

impl EngineKind {
    /// The engine's name, as `--engine` and `codemode.engine` spell it.
    pub fn as_str(self) -> &'static str {
        match self {
            #[cfg(feature = "quickjs")]
            Self::Quickjs => "quickjs",
            #[cfg(any(feature = "deno", feature = "v8"))]
            Self::Deno => "deno",
        }
    }

    /// The engines this binary was built with.
    pub fn built() -> Vec<&'static str> {
        <Self as clap::ValueEnum>::value_variants()
            .iter()
            .map(|kind| kind.as_str())
            .collect()
    }
}

impl std::str::FromStr for EngineKind {
    type Err = String;

    fn from_str(name: &str) -> Result<Self, String> {
        <Self as clap::ValueEnum>::value_variants()
            .iter()
            .copied()
            .find(|kind| kind.as_str() == name)
            .ok_or_else(|| match name {
                "deno" => format!(
                    "this binary was built without the deno engine (it has: {}); build one with `cargo build --release --no-default-features --features deno` (deno_core on its QuickJS-ng backend) or `cargo build --release --features v8` (on real V8)",
                    Self::built().join(", ")
                ),
                "quickjs" => format!(
                    "this binary was built without the quickjs engine (it has: {}); build one with `cargo build --release` (the default features)",
                    Self::built().join(", ")
                ),
                _ => format!(
                    "\"{name}\" is not an engine; this binary has: {}",
                    Self::built().join(", ")
                ),
            })
    }
}

/// Sets the environment the engines built into this binary read when they start (for
/// deno_core's quickjs backend: no on-disk bytecode cache, no WebAssembly). Call it first
/// thing in `main`, while the process has one thread; engines otherwise set it themselves
/// before their first isolate.
pub fn configure_process_environment() {
    #[cfg(any(feature = "deno", feature = "v8"))]
    deno::configure_backend();
}

/// The variables [`configure_process_environment`] sets: the only environment a worker
/// process has besides nothing.
pub fn process_environment() -> &'static [(&'static str, &'static str)] {
    #[cfg(any(feature = "deno", feature = "v8"))]
    return deno::BACKEND_ENVIRONMENT;
    #[cfg(not(any(feature = "deno", feature = "v8")))]
    return &[];
}

/// What an isolate was prepared for (see [`Engine::prepare`]): a program with other
/// bindings or limits needs another. Shared by the engines; its fields are theirs to read.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Shape {
    bindings: Vec<super::Binding>,
    fetch: bool,
    heap_bytes: usize,
    stack_bytes: usize,
    output_bytes: usize,
}

impl Shape {
    fn of(request: &RunRequest) -> Self {
        Self {
            bindings: request.bindings.clone(),
            fetch: request.fetch,
            heap_bytes: request.limits.heap_bytes,
            stack_bytes: request.limits.stack_bytes,
            output_bytes: request.limits.output_bytes,
        }
    }
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

    /// Readies the engine for a process that is about to forbid itself new threads (a
    /// worker before its system-call lockdown): what needs a thread starts now.
    pub fn before_lockdown(&self) {
        match self.kind {
            #[cfg(feature = "quickjs")]
            EngineKind::Quickjs => {}
            #[cfg(any(feature = "deno", feature = "v8"))]
            EngineKind::Deno => deno::before_lockdown(),
        }
    }

    /// Programs one worker process may run before it must be replaced, if the engine
    /// limits it.
    pub fn max_worker_reuse(&self) -> Option<u32> {
        match self.kind {
            #[cfg(feature = "quickjs")]
            EngineKind::Quickjs => None,
            #[cfg(any(feature = "deno", feature = "v8"))]
            EngineKind::Deno => cfg!(feature = "deno").then_some(deno::MAX_WORKER_REUSE),
        }
    }

    /// Memory the engine never returns for each isolate it makes in a process, if any
    /// (measured by `cargo bench --bench engines`).
    pub fn kept_per_isolate(&self) -> Option<usize> {
        match self.kind {
            #[cfg(feature = "quickjs")]
            EngineKind::Quickjs => None,
            #[cfg(any(feature = "deno", feature = "v8"))]
            EngineKind::Deno => cfg!(feature = "deno").then_some(800 << 10),
        }
    }

    /// The glue compiled for this engine, to hand to worker processes of this same binary
    /// (see [`Self::adopt_glue`]); `None` where the engine has no such form.
    pub fn compiled_glue(&self) -> Option<Vec<u8>> {
        match self.kind {
            #[cfg(feature = "quickjs")]
            EngineKind::Quickjs => quickjs::compiled_glue(),
            #[cfg(any(feature = "deno", feature = "v8"))]
            EngineKind::Deno => deno::compiled_glue(),
        }
    }

    /// Uses glue compiled by [`Self::compiled_glue`] in the host (the same binary) instead
    /// of compiling it here. Call before the first isolate.
    pub fn adopt_glue(&self, compiled: Vec<u8>) {
        match self.kind {
            #[cfg(feature = "quickjs")]
            EngineKind::Quickjs => quickjs::adopt_glue(compiled),
            #[cfg(any(feature = "deno", feature = "v8"))]
            EngineKind::Deno => deno::adopt_glue(compiled),
        }
    }

    /// Makes an isolate ready for a program shaped like `template` (its bindings, `fetch`
    /// and limits; not its code), before that program arrives. `None` if it could not be
    /// made (the program then gets a fresh one, which reports why).
    pub async fn prepare(&self, template: &RunRequest) -> Option<WarmIsolate> {
        match self.kind {
            #[cfg(feature = "quickjs")]
            EngineKind::Quickjs => quickjs::prepare(template)
                .await
                .ok()
                .map(|warm| WarmIsolate(Warm::Quickjs(warm))),
            #[cfg(any(feature = "deno", feature = "v8"))]
            EngineKind::Deno => deno::prepare(template)
                .await
                .ok()
                .map(|warm| WarmIsolate(Warm::Deno(warm))),
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
            #[cfg(feature = "quickjs")]
            EngineKind::Quickjs => {
                let warm = warm.and_then(|WarmIsolate(warm)| warm.into_quickjs());
                let (outcome, retired) = quickjs::run(request, cancel, host, warm).await;
                (
                    outcome,
                    RetiredIsolate {
                        _held: Retired::Quickjs { _held: retired },
                    },
                )
            }
            #[cfg(any(feature = "deno", feature = "v8"))]
            EngineKind::Deno => {
                let warm = warm.and_then(|WarmIsolate(warm)| warm.into_deno());
                let (outcome, retired) = deno::run(request, cancel, host, warm).await;
                (
                    outcome,
                    RetiredIsolate {
                        _held: Retired::Deno { _held: retired },
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
    #[cfg(feature = "quickjs")]
    Quickjs { _held: quickjs::Retired },
    #[cfg(any(feature = "deno", feature = "v8"))]
    Deno { _held: deno::Retired },
}

/// An isolate made before its program, never used (see [`Engine::prepare`]). Not `Send`:
/// it stays on the thread that made it.
#[derive(Debug)]
pub struct WarmIsolate(Warm);

#[derive(Debug)]
enum Warm {
    #[cfg(feature = "quickjs")]
    Quickjs(quickjs::WarmIsolate),
    #[cfg(any(feature = "deno", feature = "v8"))]
    Deno(deno::WarmIsolate),
}

impl Warm {
    #[cfg(feature = "quickjs")]
    fn into_quickjs(self) -> Option<quickjs::WarmIsolate> {
        match self {
            Self::Quickjs(warm) => Some(warm),
            // Made by another engine of this binary: not usable here.
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }

    #[cfg(any(feature = "deno", feature = "v8"))]
    fn into_deno(self) -> Option<deno::WarmIsolate> {
        match self {
            Self::Deno(warm) => Some(warm),
            #[allow(unreachable_patterns)]
            _ => None,
        }
    }
}
