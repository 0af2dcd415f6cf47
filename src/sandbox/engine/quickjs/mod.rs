//! The QuickJS-ng engine (rquickjs): one `AsyncRuntime` + `AsyncContext` per program.
//! An isolate can be made ahead of its program ([`prepare`]: runtime, context, glue
//! installed for the bindings the next program will most likely have), so a program starts
//! in an isolate that is ready; it is still used once and dropped.
//!
//! Limits: the heap cap is enforced by [`alloc::CappedAllocator`]; the wall clock and
//! cancellation by the interrupt handler while JS runs and by a host timer while JS awaits
//! the host; the stack by QuickJS's own stack limit. The kind of a failure is decided from
//! these host-side facts, never from an error message the program could forge.

mod alloc;

use std::{
    cell::{Cell, RefCell},
    rc::Rc,
    sync::{Arc, OnceLock, atomic::Ordering},
};

use rquickjs::{
    AsyncContext, AsyncRuntime, CatchResultExt, CaughtError, Context, Ctx, Function, Module,
    Object, Persistent, Promise, Runtime, Value, context::EvalOptions, module::WriteOptions,
    prelude::Promised,
};

use self::alloc::{CappedAllocator, HeapGauge};
use super::{
    Shape,
    settle::{GlueReports, Settled, Stop, Thrown, keep_unawaited, result_of},
};
use crate::{
    sandbox::{
        CancelHandle, ErrorKind, LogLevel, ProgramError, ReturnValue, RunOutcome, RunRequest,
        ToolCall, ToolHost, glue, logs::LogSink,
    },
    transpile::{PROGRAM_FILE, Position, WRAPPER_LINES},
};

/// Per-isolate state the host functions write and the host reads afterwards.
struct IsolateState {
    logs: RefCell<LogSink>,
    output_error: RefCell<Option<String>>,
    /// Set by the glue when the program ended with a ToolError it raised: (tool, schema path).
    tool_error: RefCell<Option<(String, Option<String>)>>,
    /// Who answers tool calls; set when a program takes the isolate.
    host: RefCell<Option<Arc<dyn ToolHost>>>,
    /// Failed calls nobody awaited, as the glue reported them when the program ended.
    unawaited: RefCell<Vec<String>>,
}

/// The glue's `rejection(promise, reason, handled)`, which the runtime's rejection tracker
/// calls; kept in the runtime's userdata, which the runtime frees before itself.
#[derive(rquickjs::JsLifetime)]
struct RejectionTracker<'js>(Function<'js>);

impl IsolateState {
    fn host(&self) -> Arc<dyn ToolHost> {
        self.host
            .borrow()
            .clone()
            .unwrap_or_else(|| Arc::new(crate::sandbox::NoTools))
    }
}

/// The program's cancellation and wall clock (its [`CancelHandle`]), which the interrupt
/// handler reads; unset while the isolate waits for its program.
#[derive(Default)]
struct Clock {
    cancel: RefCell<Option<CancelHandle>>,
}

/// An isolate made before its program, never used: runtime, context, glue installed.
pub(super) struct WarmIsolate {
    // Fields drop in this order: the glue's `run` before the context, the context before
    // the runtime.
    run: Option<Persistent<Function<'static>>>,
    ctx: AsyncContext,
    rt: AsyncRuntime,
    state: Rc<IsolateState>,
    gauge: HeapGauge,
    stop: Rc<Cell<Option<Stop>>>,
    clock: Rc<Clock>,
    shape: Shape,
}

impl std::fmt::Debug for WarmIsolate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarmIsolate")
            .field("shape", &self.shape)
            .finish()
    }
}

/// Makes an isolate ready for a program shaped like `template` (its bindings, `fetch`,
/// limits; its code is not used).
pub(super) async fn prepare(template: &RunRequest) -> Result<WarmIsolate, String> {
    let limits = template.limits;
    let gauge = HeapGauge::default();
    let state = Rc::new(IsolateState {
        logs: RefCell::new(LogSink::new(limits.output_bytes)),
        output_error: RefCell::new(None),
        tool_error: RefCell::new(None),
        host: RefCell::new(None),
        unawaited: RefCell::default(),
    });
    let stop = Rc::new(Cell::new(None));
    let clock = Rc::new(Clock::default());
    let (rt, ctx) = start_isolate(template, &gauge, &stop, &clock).await?;
    let run = ctx
        .async_with(async |ctx| {
            install_glue(&ctx, template, &state)
                .map(|run| Persistent::save(&ctx, run))
                .map_err(|err| match thrown(&ctx, err) {
                    Some(thrown) => thrown.message,
                    None => "the isolate was stopped while its glue was installed".into(),
                })
        })
        .await
        .map_err(|message| format!("could not start an isolate: {message}"))?;
    Ok(WarmIsolate {
        run: Some(run),
        ctx,
        rt,
        state,
        gauge,
        stop,
        clock,
        shape: Shape::of(template),
    })
}

/// A used isolate, waiting to be dropped: freeing a runtime costs more than running a small
/// program, so callers answer first and drop after.
pub(super) struct Retired {
    // The context before its runtime.
    _ctx: Option<AsyncContext>,
    _rt: Option<AsyncRuntime>,
}

/// Runs `request` in `warm` if it was prepared for a program of this shape, else in an
/// isolate made now. The isolate comes back with the outcome, to be dropped by the caller.
pub(super) async fn run(
    request: &RunRequest,
    cancel: &CancelHandle,
    host: Arc<dyn ToolHost>,
    warm: Option<WarmIsolate>,
) -> (RunOutcome, Retired) {
    let limits = request.limits;
    let warm = match warm.filter(|w| w.shape == Shape::of(request)) {
        Some(warm) => warm,
        None => match prepare(request).await {
            Ok(warm) => warm,
            Err(message) => {
                let failed = RunOutcome::failed(ProgramError::new(ErrorKind::Runtime, message));
                return (
                    failed,
                    Retired {
                        _ctx: None,
                        _rt: None,
                    },
                );
            }
        },
    };
    let WarmIsolate {
        run,
        ctx,
        rt,
        state,
        gauge,
        stop,
        clock,
        shape: _,
    } = warm;
    state.host.replace(Some(host));
    cancel.clock().start(limits.timeout);
    cancel.clock().measure_cpu_of_this_thread();
    clock.cancel.replace(Some(cancel.clone()));

    let settled = {
        let evaluate = evaluate(&ctx, request, run);
        // Both branches catch a program that waits on the host (a timer, a tool call)
        // when time runs out or it is cancelled; the interrupt catches running JS.
        let settled = tokio::select! {
            settled = evaluate => settled,
            () = cancel.clock().expiry() => {
                stop.set(Some(Stop::Timeout));
                None
            }
            () = cancel.cancelled() => {
                stop.set(Some(Stop::Cancelled));
                None
            }
        };
        settled
    };
    // Dropped by the caller once the outcome is out; pending host futures go with them,
    // and nothing polls them until then.
    let retired = Retired {
        _ctx: Some(ctx),
        _rt: Some(rt),
    };

    let stop = if gauge.cap_hit.load(Ordering::Relaxed) {
        Some(Stop::Memory)
    } else {
        stop.get()
    };
    let reports = GlueReports {
        output_error: state.output_error.borrow_mut().take(),
        tool_error: state.tool_error.borrow_mut().take(),
    };
    let result = result_of(
        stop,
        settled,
        reports,
        &limits,
        cancel,
        request.program_lines,
    );
    (finish(state, &gauge, result), retired)
}

async fn start_isolate(
    template: &RunRequest,
    gauge: &HeapGauge,
    stop: &Rc<Cell<Option<Stop>>>,
    clock: &Rc<Clock>,
) -> Result<(AsyncRuntime, AsyncContext), String> {
    let allocator = CappedAllocator::new(template.limits.heap_bytes, gauge.clone());
    let rt = AsyncRuntime::new_with_alloc(allocator)
        .map_err(|e| format!("could not start an isolate: {e}"))?;
    rt.set_max_stack_size(template.limits.stack_bytes).await;
    let (cap_hit, clock, stop) = (gauge.cap_hit.clone(), clock.clone(), stop.clone());
    rt.set_interrupt_handler(Some(Box::new(move || {
        let (cancelled, expired) = clock
            .cancel
            .borrow()
            .as_ref()
            .map_or((false, false), |cancel| {
                (cancel.is_cancelled(), cancel.clock().expired())
            });
        let reason = if cap_hit.load(Ordering::Relaxed) {
            Some(Stop::Memory)
        } else if cancelled {
            Some(Stop::Cancelled)
        } else if expired {
            Some(Stop::Timeout)
        } else {
            None
        };
        if reason.is_some() && stop.get().is_none() {
            stop.set(reason);
        }
        reason.is_some()
    })))
    .await;
    // Tells the glue which promises were rejected with nobody to handle them (and which got
    // a handler later), so that a failed call the program never awaited reaches its answer.
    rt.set_host_promise_rejection_tracker(Some(Box::new(
        |ctx: Ctx<'_>, promise: Value<'_>, reason: Value<'_>, handled: bool| {
            let Some(track) = ctx
                .userdata::<RejectionTracker>()
                .map(|tracker| tracker.0.clone())
            else {
                return;
            };
            if track.call::<_, ()>((promise, reason, handled)).is_err() {
                let _ = ctx.catch();
            }
        },
    )))
    .await;
    let ctx = AsyncContext::full(&rt)
        .await
        .map_err(|e| format!("could not create a context: {e}"))?;
    Ok((rt, ctx))
}

/// Compiles the program and awaits its result through the glue's `run`. `None` means the
/// engine stopped the program uncatchably (interrupt), which the caller classifies.
async fn evaluate(
    ctx: &AsyncContext,
    request: &RunRequest,
    run: Option<Persistent<Function<'static>>>,
) -> Option<Settled> {
    ctx.async_with(async |ctx| {
        let run = match run.map(|run| run.restore(&ctx)) {
            Some(Ok(run)) => run,
            Some(Err(err)) => return thrown(&ctx, err).map(Settled::Thrown),
            None => return None,
        };
        let mut options = EvalOptions::default();
        options.global = true;
        options.strict = false;
        options.filename = Some(PROGRAM_FILE.to_string());
        let program = match ctx.eval_with_options::<Function, _>(request.js.as_str(), options) {
            Ok(program) => program,
            Err(err) => return thrown(&ctx, err).map(Settled::Syntax),
        };
        let promise = match run.call::<_, Promise>((program,)) {
            Ok(promise) => promise,
            Err(err) => return thrown(&ctx, err).map(Settled::Thrown),
        };
        match promise.into_future::<String>().await {
            Ok(json) => Some(Settled::Value(json)),
            Err(err) => thrown(&ctx, err).map(Settled::Thrown),
        }
    })
    .await
}

/// Evaluates each capability's glue with the host functions, and returns `run`.
fn install_glue<'js>(
    ctx: &Ctx<'js>,
    request: &RunRequest,
    state: &Rc<IsolateState>,
) -> rquickjs::Result<Function<'js>> {
    let host = Object::new(ctx.clone())?;
    let logs = state.clone();
    host.set(
        "log",
        Function::new(ctx.clone(), move |level: String, text: String| -> bool {
            logs.logs
                .borrow_mut()
                .push(LogLevel::from_name(&level), &text)
        })?,
    )?;
    host.set(
        "sleep",
        Function::new(ctx.clone(), |ms: f64| {
            // As browsers do, delays are whole milliseconds up to 2^31 - 1.
            let ms = if ms.is_finite() {
                ms.clamp(0.0, 2_147_483_647.0)
            } else {
                0.0
            };
            Promised(async move {
                tokio::time::sleep(std::time::Duration::from_secs_f64(ms / 1000.0)).await;
            })
        })?,
    )?;
    let output = state.clone();
    host.set(
        "outputError",
        Function::new(ctx.clone(), move |message: String| {
            output.output_error.borrow_mut().get_or_insert(message);
        })?,
    )?;
    let tool_error = state.clone();
    host.set(
        "uncaughtToolError",
        Function::new(
            ctx.clone(),
            move |tool: String, schema_path: Option<String>| {
                tool_error
                    .tool_error
                    .borrow_mut()
                    .replace((tool, schema_path));
            },
        )?,
    )?;
    let unawaited = state.clone();
    host.set(
        "unawaitedFailure",
        Function::new(ctx.clone(), move |text: String| {
            keep_unawaited(&mut unawaited.unawaited.borrow_mut(), &text);
        })?,
    )?;
    let calls = state.clone();
    host.set(
        "callTool",
        Function::new(
            ctx.clone(),
            move |namespace: String,
                  tool: String,
                  arguments: String,
                  line: Option<u32>,
                  column: Option<u32>| {
                let reply = calls.host().call_tool(ToolCall {
                    namespace,
                    tool,
                    arguments,
                    site: line
                        .zip(column)
                        .map(|(line, column)| Position { line, column }),
                });
                Promised(async move { reply.await.to_js_json() })
            },
        )?,
    )?;
    if request.fetch {
        let fetches = state.clone();
        host.set(
            "fetch",
            Function::new(ctx.clone(), move |request: String| {
                let reply = fetches.host().fetch(request);
                Promised(async move { reply.await.to_js_json() })
            })?,
        )?;
    }
    let bindings = rquickjs::Array::new(ctx.clone())?;
    for (i, binding) in request.bindings.iter().enumerate() {
        let entry = Object::new(ctx.clone())?;
        entry.set("namespace", binding.namespace.as_str())?;
        entry.set("tools", binding.tools.clone())?;
        entry.set("global", binding.global)?;
        entry.set("unavailable", binding.unavailable.as_deref())?;
        let aliases = rquickjs::Array::new(ctx.clone())?;
        for (j, alias) in binding.aliases.iter().enumerate() {
            let pair = Object::new(ctx.clone())?;
            pair.set("name", alias.name.as_str())?;
            pair.set("tool", alias.tool.as_str())?;
            aliases.set(j, pair)?;
        }
        entry.set("aliases", aliases)?;
        bindings.set(i, entry)?;
    }
    host.set("bindings", bindings)?;
    host.set("wrapperLines", WRAPPER_LINES)?;
    host.set("outputChars", request.limits.output_bytes)?;

    let compiled = glue_bytecode()?;
    let install = load_module(ctx, &compiled.main)?;
    let run: Function = install.call((host.clone(),))?;
    let rejection: Function = host.get("rejection")?;
    let _ = ctx.store_userdata(RejectionTracker(rejection));
    if request.fetch {
        let install_fetch = load_module(ctx, &compiled.fetch)?;
        install_fetch.call::<_, ()>((host,))?;
    }
    Ok(run)
}

/// The glue module as bytecode, compiled once per process: parsing it per isolate would
/// cost more than the rest of the isolate's start.
/// The glue as bytecode: the main module, and `fetch` as a module of its own, which only
/// programs that have `fetch` pay for loading.
struct CompiledGlue {
    main: Vec<u8>,
    fetch: Vec<u8>,
}

impl CompiledGlue {
    /// `[main length: u32 LE][main][fetch]`, to hand to a worker.
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(4 + self.main.len() + self.fetch.len());
        out.extend_from_slice(
            &u32::try_from(self.main.len())
                .unwrap_or(u32::MAX)
                .to_le_bytes(),
        );
        out.extend_from_slice(&self.main);
        out.extend_from_slice(&self.fetch);
        out
    }

    fn from_bytes(bytes: &[u8]) -> Option<Self> {
        let length = usize::try_from(u32::from_le_bytes(bytes.get(..4)?.try_into().ok()?)).ok()?;
        let main = bytes.get(4..4usize.checked_add(length)?)?.to_vec();
        let fetch = bytes.get(4 + length..)?.to_vec();
        Some(Self { main, fetch })
    }
}

/// The glue handed to a worker by its host (compiled by the same binary): a worker then
/// skips compiling it, the largest part of its start.
static HANDED_GLUE: OnceLock<CompiledGlue> = OnceLock::new();

/// Adopts glue this same binary compiled in another process (the host), before any
/// isolate is made here.
pub(super) fn adopt_glue(bytes: Vec<u8>) {
    if let Some(compiled) = CompiledGlue::from_bytes(&bytes) {
        let _ = HANDED_GLUE.set(compiled);
    }
}

/// The glue this process uses, compiling it if needed (to hand to workers).
pub(super) fn compiled_glue() -> Option<Vec<u8>> {
    glue_bytecode().ok().map(CompiledGlue::to_bytes)
}

fn glue_bytecode() -> rquickjs::Result<&'static CompiledGlue> {
    if let Some(handed) = HANDED_GLUE.get() {
        return Ok(handed);
    }
    static COMPILED: OnceLock<Result<CompiledGlue, String>> = OnceLock::new();
    let compiled = COMPILED.get_or_init(|| {
        let compile = || -> rquickjs::Result<CompiledGlue> {
            let rt = Runtime::new()?;
            let ctx = Context::full(&rt)?;
            ctx.with(|ctx| {
                let main = Module::declare(ctx.clone(), glue::MODULE_NAME, glue::module_source())?
                    .write(WriteOptions::default())?;
                let fetch =
                    Module::declare(ctx, glue::FETCH_MODULE_NAME, glue::fetch_module_source())?
                        .write(WriteOptions::default())?;
                Ok(CompiledGlue { main, fetch })
            })
        };
        compile().map_err(|e| e.to_string())
    });
    compiled.as_ref().map_err(|message| {
        tracing::error!("the glue module does not compile (a bug in this build): {message}");
        rquickjs::Error::Unknown
    })
}

/// Loads a glue module from its bytecode and returns its default export.
fn load_module<'js>(ctx: &Ctx<'js>, bytecode: &[u8]) -> rquickjs::Result<Function<'js>> {
    // SAFETY: the bytecode was written by this same build of QuickJS (in this process, or
    // in the host that started this worker from the same binary).
    let module = unsafe { Module::load(ctx.clone(), bytecode)? };
    let (module, _evaluated) = module.eval()?;
    module.get("default")
}

/// Reads what was thrown, or `None` when it was the uncatchable interrupt.
fn thrown<'js>(ctx: &Ctx<'js>, err: rquickjs::Error) -> Option<Thrown> {
    let caught = Err::<(), _>(err).catch(ctx).err()?;
    let value = match caught {
        CaughtError::Exception(exception) => exception.into_value(),
        CaughtError::Value(value) => value,
        CaughtError::Error(rquickjs::Error::Exception) => return None,
        CaughtError::Error(error) => {
            return Some(Thrown {
                name: None,
                message: error.to_string(),
                stack: None,
            });
        }
    };
    if value.is_uncatchable_error() {
        return None;
    }
    Some(describe(value))
}

fn describe(value: Value<'_>) -> Thrown {
    if let Some(object) = value.as_object() {
        let text = |key: &str| {
            object
                .get::<_, Option<rquickjs::Coerced<String>>>(key)
                .ok()
                .flatten()
                .map(|c| c.0)
        };
        let message = text("message");
        if let Some(message) = message {
            return Thrown {
                name: text("name"),
                message,
                stack: text("stack"),
            };
        }
    }
    let message = value
        .get::<rquickjs::Coerced<String>>()
        .map(|c| c.0)
        .unwrap_or_else(|_| "a value that cannot be shown".to_string());
    Thrown {
        name: None,
        message: format!("the program threw a non-Error value: {message}"),
        stack: None,
    }
}

fn finish(
    state: Rc<IsolateState>,
    gauge: &HeapGauge,
    result: Result<ReturnValue, ProgramError>,
) -> RunOutcome {
    let sink = std::mem::replace(&mut *state.logs.borrow_mut(), LogSink::new(0));
    let (logs, logs_truncated) = sink.finish();
    RunOutcome {
        result,
        logs,
        logs_truncated,
        heap_peak_bytes: gauge.peak.load(Ordering::Relaxed),
        unawaited: std::mem::take(&mut *state.unawaited.borrow_mut()),
        cpu: None,
    }
}
