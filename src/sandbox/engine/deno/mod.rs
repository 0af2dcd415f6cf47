//! The deno_core engine (`--engine deno`): one `JsRuntime` per program, made from a startup
//! snapshot that already holds the shared glue (`bootstrap.js` turns this engine's ops
//! into the `host` the glue expects). Built with the `deno` feature it runs on deno_core's
//! QuickJS-ng backend; with `v8`, the same code runs on real V8.
//!
//! Where isolates live: the quickjs backend cannot make more than a few hundred runtimes
//! on one thread (the 277th panics; ops break after ~195 from a snapshot) and keeps ~0.8 MB
//! of each. In a process that may start threads, each isolate gets a thread of its own,
//! made for it and ended with it (tens of microseconds against the milliseconds of the
//! runtime). A locked-down worker may not start threads: there isolates are made on the
//! worker's thread, and the worker is replaced before the cap ([`MAX_WORKER_REUSE`]).
//!
//! Limits: the wall clock and cancellation by the process's watchdog thread, which calls
//! `terminate_execution` (JS that runs cannot look at a clock), and by the isolate's own
//! select (JS that waits on the host); the heap by `heap_limits`, with the isolate
//! terminated when it runs out, which the program cannot catch; console output and the
//! result by the shared caps.

mod ops;
mod watchdog;

use std::sync::{
    Arc, OnceLock,
    atomic::{AtomicBool, AtomicU8, Ordering},
};

use deno_core::{JsRuntime, JsRuntimeForSnapshot, PollEventLoopOptions, RuntimeOptions, v8};
use serde::Deserialize;
use tokio::sync::{Notify, oneshot};

use self::ops::IsolateState;
use super::{
    Shape,
    settle::{Settled, Stop, Thrown, result_of},
};
use crate::{
    sandbox::{
        CancelHandle, ErrorKind, ProgramError, RunOutcome, RunRequest, ToolHost, logs::LogSink,
    },
    transpile::{PROGRAM_FILE, WRAPPER_LINES},
};

/// Why the program was stopped, set once by whoever stops it first (the caller's clock,
/// the heap callback, cancellation) and read by both sides.
#[derive(Default)]
struct Watch {
    stop: AtomicU8,
    woken: Notify,
}

impl Watch {
    fn stop(&self, why: Stop) {
        let code = match why {
            Stop::Timeout => 1,
            Stop::Memory => 2,
            Stop::Cancelled => 3,
        };
        let _ = self
            .stop
            .compare_exchange(0, code, Ordering::SeqCst, Ordering::SeqCst);
        self.woken.notify_waiters();
    }

    fn stopped(&self) -> Option<Stop> {
        match self.stop.load(Ordering::SeqCst) {
            0 => None,
            1 => Some(Stop::Timeout),
            2 => Some(Stop::Memory),
            _ => Some(Stop::Cancelled),
        }
    }

    async fn wait(&self) {
        loop {
            let woken = self.woken.notified();
            tokio::pin!(woken);
            woken.as_mut().enable();
            if self.stopped().is_some() {
                return;
            }
            woken.await;
        }
    }
}

/// A program for an isolate thread, and where its outcome goes.
struct Job {
    request: RunRequest,
    cancel: CancelHandle,
    host: Arc<dyn ToolHost>,
    outcome: oneshot::Sender<RunOutcome>,
}

/// Set in a process that may not start threads (a locked-down worker): isolates are made
/// on the caller's thread, which the worker retires long before the backend's per-thread
/// cap (see [`MAX_WORKER_REUSE`]).
static CONFINED: AtomicBool = AtomicBool::new(false);

/// Programs one worker process may run on this engine before it is replaced: each one
/// makes up to two runtimes on the worker's one thread, and the quickjs backend cannot
/// make more than ~195 there.
pub(super) const MAX_WORKER_REUSE: u32 = 60;

/// Prepares this process for isolates made on the caller's thread only, with the watchdog
/// started now: call before the process forbids itself new threads.
pub(super) fn before_lockdown() {
    CONFINED.store(true, Ordering::SeqCst);
    configure_backend();
    watchdog::start();
    JsRuntime::init_platform(None);
}

/// An isolate made before its program, never used.
pub(super) struct WarmIsolate {
    place: Place,
    terminate: v8::IsolateHandle,
    watch: Arc<Watch>,
    shape: Shape,
}

enum Place {
    /// On a thread of its own, which waits for one program.
    Thread(oneshot::Sender<Job>),
    /// On this thread (a confined process).
    Here(Box<Isolate>),
}

impl std::fmt::Debug for WarmIsolate {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WarmIsolate")
            .field("shape", &self.shape)
            .finish()
    }
}

/// A used isolate made on the caller's thread, to drop after the answer; isolates on
/// threads of their own are dropped by their thread.
pub(super) struct Retired {
    _isolate: Option<Box<Isolate>>,
}

/// Makes an isolate ready for a program shaped like `template` (its bindings, `fetch`,
/// limits; its code is not used), on a thread of its own unless the process is confined.
pub(super) async fn prepare(template: &RunRequest) -> Result<WarmIsolate, String> {
    let shape = Shape::of(template);
    let watch = Arc::new(Watch::default());
    if CONFINED.load(Ordering::SeqCst) {
        let mut isolate = Isolate::start(&shape, &watch)?;
        let terminate = isolate.runtime.v8_isolate().thread_safe_handle();
        return Ok(WarmIsolate {
            place: Place::Here(Box::new(isolate)),
            terminate,
            watch,
            shape,
        });
    }
    let (ready, made) = oneshot::channel();
    let (jobs, job) = oneshot::channel();
    let (thread_shape, thread_watch) = (shape.clone(), watch.clone());
    std::thread::Builder::new()
        .name("codemode-deno-isolate".into())
        // Well above the JS stack limit, which the engine checks against this stack.
        .stack_size(shape.stack_bytes.max(1 << 20).saturating_mul(2) + (4 << 20))
        .spawn(move || isolate_thread(thread_shape, thread_watch, ready, job))
        .map_err(|e| format!("could not start an isolate thread: {e}"))?;
    let terminate = made
        .await
        .map_err(|_| "the isolate thread ended before its isolate was ready".to_string())??;
    Ok(WarmIsolate {
        place: Place::Thread(jobs),
        terminate,
        watch,
        shape,
    })
}

/// Runs `request` in `warm` if it was prepared for a program of this shape, else in an
/// isolate made now.
pub(super) async fn run(
    request: &RunRequest,
    cancel: &CancelHandle,
    host: Arc<dyn ToolHost>,
    warm: Option<WarmIsolate>,
) -> (RunOutcome, Retired) {
    let nothing = Retired { _isolate: None };
    let warm = match warm.filter(|w| w.shape == Shape::of(request)) {
        Some(warm) => warm,
        None => match prepare(request).await {
            Ok(warm) => warm,
            Err(message) => {
                let error = ProgramError::new(ErrorKind::Runtime, message);
                return (RunOutcome::failed(error), nothing);
            }
        },
    };
    let WarmIsolate {
        place,
        terminate,
        watch,
        shape: _,
    } = warm;
    cancel.clock().start(request.limits.timeout);
    let _watching = watchdog::watch(terminate, watch.clone(), cancel.clone());
    match place {
        Place::Here(mut isolate) => {
            let outcome = isolate.run(request.clone(), cancel, host, &watch).await;
            (
                outcome,
                Retired {
                    _isolate: Some(isolate),
                },
            )
        }
        Place::Thread(jobs) => {
            let (outcome, answer) = oneshot::channel();
            let job = Job {
                request: request.clone(),
                cancel: cancel.clone(),
                host,
                outcome,
            };
            if jobs.send(job).is_err() {
                let error = ProgramError::new(
                    ErrorKind::Runtime,
                    "the isolate thread ended before it took the program",
                );
                return (RunOutcome::failed(error), nothing);
            }
            (answer.await.unwrap_or_else(|_| lost()), nothing)
        }
    }
}

fn lost() -> RunOutcome {
    RunOutcome::failed(ProgramError::new(
        ErrorKind::Runtime,
        "the isolate stopped without an answer (engine failure); run the program again",
    ))
}

/// One isolate's whole life on its own thread: made, handed one program (or none), dropped
/// after answering.
fn isolate_thread(
    shape: Shape,
    watch: Arc<Watch>,
    ready: oneshot::Sender<Result<v8::IsolateHandle, String>>,
    job: oneshot::Receiver<Job>,
) {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            let _ = ready.send(Err(format!("could not start an isolate thread: {e}")));
            return;
        }
    };
    runtime.block_on(async move {
        let mut isolate = match Isolate::start(&shape, &watch) {
            Ok(isolate) => isolate,
            Err(message) => {
                let _ = ready.send(Err(message));
                return;
            }
        };
        let handle = isolate.runtime.v8_isolate().thread_safe_handle();
        if ready.send(Ok(handle)).is_err() {
            return;
        }
        // A warm isolate nobody used: its sender was dropped.
        let Ok(job) = job.await else { return };
        let outcome = isolate
            .run(job.request, &job.cancel, job.host, &watch)
            .await;
        let _ = job.outcome.send(outcome);
        // The isolate is dropped here, after its answer is out.
    });
}

/// A runtime with the glue installed, and what the host reads back from it.
struct Isolate {
    runtime: JsRuntime,
    settle: v8::Global<v8::Function>,
    state: std::rc::Rc<IsolateState>,
    heap_bytes: usize,
}

/// The program's end as `settle` in `bootstrap.js` describes it.
#[derive(Deserialize)]
struct Described {
    name: Option<String>,
    message: String,
    stack: Option<String>,
}

impl Isolate {
    fn start(shape: &Shape, watch: &Arc<Watch>) -> Result<Self, String> {
        configure_backend();
        set_stack_limit(shape.stack_bytes);
        let snapshot = snapshot();
        let mut runtime = JsRuntime::try_new(RuntimeOptions {
            startup_snapshot: snapshot,
            extensions: ops::extensions(snapshot.is_none()),
            create_params: Some(v8::CreateParams::default().heap_limits(0, shape.heap_bytes)),
            ..Default::default()
        })
        .map_err(|e| format!("could not start an isolate: {e}"))?;
        let state = IsolateState::new(shape.output_bytes);
        runtime.op_state().borrow_mut().put(state.clone());
        runtime
            .v8_isolate()
            .set_prepare_stack_trace_callback(prepare_stack_trace);

        // Running out of heap must end the program uncatchably, whatever it catches. The
        // quickjs backend does so by itself when no near-heap-limit callback is set (it
        // terminates the isolate); real V8 would abort the process, so there the callback
        // terminates it and raises the limit for the unwinding. Either way the isolate is
        // terminated without the watchdog having asked: that is how the host tells.
        #[cfg(feature = "v8")]
        {
            let terminate = runtime.v8_isolate().thread_safe_handle();
            let heap_watch = watch.clone();
            runtime.add_near_heap_limit_callback(move |current, _initial| {
                heap_watch.stop(Stop::Memory);
                terminate.terminate_execution();
                current.saturating_mul(2)
            });
        }
        #[cfg(not(feature = "v8"))]
        let _ = watch;
        let config = serde_json::json!({
            "bindings": shape.bindings,
            "fetch": shape.fetch,
            "wrapperLines": WRAPPER_LINES,
            "outputChars": shape.output_bytes,
        })
        .to_string();
        let script = format!(
            "globalThis.__codemodeInstall({})",
            serde_json::Value::String(config)
        );
        let settle = runtime
            .execute_script("codemode:install", script)
            .map_err(|e| format!("could not install the glue: {e}"))?;
        let settle = {
            deno_core::scope!(scope, runtime);
            let local = v8::Local::new(scope, settle);
            let function = v8::Local::<v8::Function>::try_from(local)
                .map_err(|_| "the glue's install did not return a function".to_string())?;
            v8::Global::new(scope, function)
        };
        Ok(Self {
            runtime,
            settle,
            state,
            heap_bytes: shape.heap_bytes,
        })
    }

    async fn run(
        &mut self,
        request: RunRequest,
        cancel: &CancelHandle,
        host: Arc<dyn ToolHost>,
        watch: &Watch,
    ) -> RunOutcome {
        self.state.host.replace(Some(host));
        // This thread's CPU time bounds the run while its clock is held.
        cancel.clock().measure_cpu_of_this_thread();
        let settled = {
            let evaluate = self.evaluate(&request.js);
            tokio::select! {
                settled = evaluate => settled,
                () = cancel.clock().expiry() => {
                    watch.stop(Stop::Timeout);
                    None
                }
                () = cancel.cancelled() => {
                    watch.stop(Stop::Cancelled);
                    None
                }
                () = watch.wait() => None,
            }
        };
        let reports = std::mem::take(&mut *self.state.reports.borrow_mut());
        // Terminated, and neither the watchdog nor this thread asked: the heap ran out.
        let stop = watch
            .stopped()
            .or_else(|| settled.is_none().then_some(Stop::Memory));
        let result = result_of(
            stop,
            settled,
            reports,
            &request.limits,
            cancel,
            request.program_lines,
        );
        let sink = std::mem::replace(&mut *self.state.logs.borrow_mut(), LogSink::new(0));
        let (logs, logs_truncated) = sink.finish();
        let heap_peak_bytes = self
            .runtime
            .v8_isolate()
            .get_heap_statistics()
            .used_heap_size()
            .min(self.heap_bytes);
        RunOutcome {
            result,
            logs,
            logs_truncated,
            heap_peak_bytes,
            unawaited: std::mem::take(&mut *self.state.unawaited.borrow_mut()),
            cpu: None,
        }
    }

    /// Whether the isolate was terminated (by the watchdog, or by the backend when the heap
    /// ran out).
    fn terminating(&mut self) -> bool {
        self.runtime.v8_isolate().is_execution_terminating()
    }

    /// Compiles the program and runs it through `settle` with the event loop. `None` when
    /// the engine stopped it (termination), which the caller classifies.
    async fn evaluate(&mut self, js: &str) -> Option<Settled> {
        let program = match self.runtime.execute_script(PROGRAM_FILE, js.to_string()) {
            Ok(program) => program,
            Err(_) if self.terminating() => return None,
            Err(error) => return Some(Settled::Syntax(thrown_of(&error))),
        };
        let call = self.runtime.call_with_args(&self.settle, &[program]);
        let settled = self
            .runtime
            .with_event_loop_promise(call, PollEventLoopOptions::default())
            .await;
        let value = match settled {
            Ok(value) => value,
            // Before anything else: a terminated program leaves its promise unsettled too.
            Err(_) if self.terminating() => return None,
            // Nothing is pending that could settle what the program awaits: like the
            // default engine, it waits for its deadline (the caller's select ends it).
            Err(error)
                if matches!(
                    error.as_kind(),
                    deno_core::error::CoreErrorKind::PendingPromiseResolution
                ) =>
            {
                return std::future::pending().await;
            }
            Err(error) => {
                return Some(Settled::Thrown(Thrown {
                    name: None,
                    message: format!("the engine stopped the program: {error}"),
                    stack: None,
                }));
            }
        };
        let text = {
            deno_core::scope!(scope, self.runtime);
            let local = v8::Local::new(scope, value);
            local.to_rust_string_lossy(scope)
        };
        if let Some(json) = text.strip_prefix('v') {
            return Some(Settled::Value(json.to_string()));
        }
        let described = text
            .strip_prefix('t')
            .and_then(|json| serde_json::from_str::<Described>(json).ok())
            .unwrap_or(Described {
                name: None,
                message: "the program ended with a value the host could not read".into(),
                stack: None,
            });
        Some(Settled::Thrown(Thrown {
            name: described.name,
            message: described.message,
            stack: described.stack,
        }))
    }
}

/// deno_core's stack formatter, which panics where the engine cannot make the stack's
/// string (a program that threw a 40 MB message and ran out of heap formatting it): across
/// the engine's callback a panic aborts the process, the whole server with `--isolation
/// none`. Such an error gets no stack; the program ends as its limits say.
fn prepare_stack_trace<'s, 'i>(
    scope: &mut v8::PinScope<'s, 'i>,
    error: v8::Local<'s, v8::Value>,
    callsites: v8::Local<'s, v8::Array>,
) -> v8::Local<'s, v8::Value> {
    // Stopped (its heap cap, its deadline), or a message no answer would show whole (the
    // answer is capped far below): formatting would print the whole message to stderr,
    // then fail for want of heap.
    if scope.is_execution_terminating()
        || text_chars(scope, error, "message").saturating_add(text_chars(scope, error, "name"))
            > MAX_STACK_MESSAGE_CHARS
    {
        return v8::undefined(scope).into();
    }
    let formatted = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
        deno_core::error::prepare_stack_trace_callback(scope, error, callsites)
    }));
    match formatted {
        Ok(stack) => stack,
        Err(_) => v8::undefined(scope).into(),
    }
}

/// The longest error name and message whose stack is formatted.
const MAX_STACK_MESSAGE_CHARS: usize = 1 << 20;

/// How long `error[property]` (its name, its message) is, if it is a string.
fn text_chars<'s>(
    scope: &mut v8::PinScope<'s, '_>,
    error: v8::Local<'s, v8::Value>,
    property: &str,
) -> usize {
    let Ok(object) = error.try_cast::<v8::Object>() else {
        return 0;
    };
    let Some(key) = v8::String::new(scope, property) else {
        return 0;
    };
    object
        .get(scope, key.into())
        .and_then(|text| text.try_cast::<v8::String>().ok())
        .map_or(0, |text| text.length())
}

/// A compile error as deno_core reports it.
fn thrown_of(error: &deno_core::error::JsError) -> Thrown {
    Thrown {
        name: error.name.clone(),
        message: error
            .message
            .clone()
            .unwrap_or_else(|| error.exception_message.clone()),
        stack: error.stack.clone(),
    }
}

/// Settings of the quickjs backend, read from the environment once per process before its
/// first runtime: no on-disk bytecode cache (it would write programs' compiled code under
/// ~/.cache, and a locked-down worker may not), and no WebAssembly (the default engine has
/// none; it would add the WAMR interpreter to what programs reach).
pub(super) const BACKEND_ENVIRONMENT: &[(&str, &str)] =
    &[("V82JSC_NO_BC_CACHE", "1"), ("QJS_NO_WASM", "1")];

/// Sets [`BACKEND_ENVIRONMENT`] where it is missing, once. The binary does this first thing
/// in `main` (`configure_process_environment`), while it has one thread; for embedders, the
/// engine does it before its first runtime.
pub(super) fn configure_backend() {
    static CONFIGURED: OnceLock<()> = OnceLock::new();
    CONFIGURED.get_or_init(|| {
        for (name, value) in BACKEND_ENVIRONMENT {
            if std::env::var_os(name).is_none() {
                // SAFETY: done once, before this engine's first runtime; the backend reads
                // these only when it makes a runtime. An embedder that reads the
                // environment on other threads at this moment should set them itself
                // before starting threads.
                unsafe { std::env::set_var(name, value) };
            }
        }
    });
}

/// The engine's JS stack limit is per process (a V8 flag): the first isolate's limit is
/// used for all of them.
fn set_stack_limit(stack_bytes: usize) {
    static SET: OnceLock<()> = OnceLock::new();
    SET.get_or_init(|| {
        let kib = (stack_bytes / 1024).max(64);
        v8::V8::set_flags_from_string(&format!("--stack-size={kib}"));
    });
}

/// The startup snapshot this process uses: handed by the host (see [`adopt_glue`]) or made
/// here once. `None` when there is none (an isolate then evaluates the glue itself): on
/// real V8, whose snapshots are made by a process of their own, and if making one failed.
fn snapshot() -> Option<&'static [u8]> {
    if cfg!(feature = "v8") {
        return None;
    }
    if let Some(handed) = HANDED_SNAPSHOT.get() {
        return Some(handed);
    }
    static MADE: OnceLock<Option<&'static [u8]>> = OnceLock::new();
    *MADE.get_or_init(|| {
        configure_backend();
        let make = || -> Result<&'static [u8], String> {
            let js = JsRuntimeForSnapshot::try_new(RuntimeOptions {
                extensions: ops::extensions(true),
                ..Default::default()
            })
            .map_err(|e| e.to_string())?;
            Ok(&*Box::leak(js.snapshot()))
        };
        // On a thread of its own where the process may start one: the snapshot's runtime
        // counts against its thread's cap, and deno_core wants a tokio runtime around it.
        let made = if CONFINED.load(Ordering::SeqCst) {
            make()
        } else {
            std::thread::Builder::new()
                .name("codemode-deno-snapshot".into())
                .spawn(move || {
                    let runtime = tokio::runtime::Builder::new_current_thread()
                        .enable_all()
                        .build()
                        .map_err(|e| e.to_string())?;
                    let _entered = runtime.enter();
                    make()
                })
                .map_err(|e| e.to_string())
                .and_then(|thread| {
                    thread
                        .join()
                        .map_err(|_| "the snapshot thread panicked".to_string())?
                })
        };
        made.map_err(|message| {
            tracing::error!("the deno engine's startup snapshot could not be made; each isolate evaluates the glue instead: {message}");
        })
        .ok()
    })
}

/// A snapshot made by the host (the same binary), handed to a worker process.
static HANDED_SNAPSHOT: OnceLock<&'static [u8]> = OnceLock::new();

/// The snapshot, to hand to worker processes of this same binary.
pub(super) fn compiled_glue() -> Option<Vec<u8>> {
    snapshot().map(<[u8]>::to_vec)
}

/// Adopts a snapshot this same binary made in the host, before any isolate is made here.
pub(super) fn adopt_glue(bytes: Vec<u8>) {
    let _ = HANDED_SNAPSHOT.set(Box::leak(bytes.into_boxed_slice()));
}
