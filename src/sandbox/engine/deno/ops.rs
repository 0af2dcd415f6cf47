//! What JS can reach on this engine: one deno_core extension per capability of the shared
//! glue (see `sandbox/glue/mod.rs` for what each one installs), plus `codemode_glue`, which
//! carries the glue itself and `bootstrap.js`. Nothing else is registered: deno_core's own
//! built-in ops stay out of the program's reach because `bootstrap.js` removes `Deno`.

use std::{cell::RefCell, rc::Rc, sync::Arc};

use deno_core::{Extension, ExtensionFileSource, OpState, extension, op2};

use super::super::settle::GlueReports;
use crate::{
    sandbox::{LogLevel, NoTools, ToolCall, ToolHost, glue, logs::LogSink},
    transpile::Position,
};

/// Per-isolate state the ops write and the host reads afterwards; kept in the isolate's
/// `OpState`.
pub(super) struct IsolateState {
    pub(super) logs: RefCell<LogSink>,
    pub(super) reports: RefCell<GlueReports>,
    /// Failed calls nobody awaited, as the glue reported them when the program ended.
    pub(super) unawaited: RefCell<Vec<String>>,
    /// Who answers tool calls; set when a program takes the isolate.
    pub(super) host: RefCell<Option<Arc<dyn ToolHost>>>,
}

impl IsolateState {
    pub(super) fn new(output_bytes: usize) -> Rc<Self> {
        Rc::new(Self {
            logs: RefCell::new(LogSink::new(output_bytes)),
            reports: RefCell::new(GlueReports::default()),
            unawaited: RefCell::default(),
            host: RefCell::new(None),
        })
    }

    fn host(&self) -> Arc<dyn ToolHost> {
        self.host
            .borrow()
            .clone()
            .unwrap_or_else(|| Arc::new(NoTools))
    }
}

fn isolate(state: &OpState) -> Rc<IsolateState> {
    state.borrow::<Rc<IsolateState>>().clone()
}

/// console: one formatted line at a level.
#[op2(fast)]
fn op_codemode_log(state: &mut OpState, #[string] level: &str, #[string] text: &str) -> bool {
    isolate(state)
        .logs
        .borrow_mut()
        .push(LogLevel::from_name(level), text)
}

/// timers: resolves after `ms` milliseconds (whole, up to 2^31 - 1, as browsers do).
#[op2]
async fn op_codemode_sleep(ms: f64) {
    let ms = if ms.is_finite() {
        ms.clamp(0.0, 2_147_483_647.0)
    } else {
        0.0
    };
    tokio::time::sleep(std::time::Duration::from_secs_f64(ms / 1000.0)).await;
}

/// tools: one call, arguments and reply as JSON text; `line`/`column` 0 when unknown.
#[op2]
#[string]
async fn op_codemode_call_tool(
    state: Rc<RefCell<OpState>>,
    #[string] namespace: String,
    #[string] tool: String,
    #[string] arguments: String,
    line: u32,
    column: u32,
) -> String {
    let host = isolate(&state.borrow()).host();
    let site = (line > 0 && column > 0).then_some(Position { line, column });
    let reply = host.call_tool(ToolCall {
        namespace,
        tool,
        arguments,
        site,
    });
    reply.await.to_js_json()
}

/// fetch: one request as the glue's JSON; the host alone decides what is reached.
#[op2]
#[string]
async fn op_codemode_fetch(state: Rc<RefCell<OpState>>, #[string] request: String) -> String {
    let reply = isolate(&state.borrow()).host().fetch(request);
    reply.await.to_js_json()
}

/// result: the returned value cannot become JSON; the first report wins.
#[op2(fast)]
fn op_codemode_output_error(state: &mut OpState, #[string] message: &str) {
    isolate(state)
        .reports
        .borrow_mut()
        .output_error
        .get_or_insert_with(|| message.to_string());
}

/// result: the program ended with a ToolError the glue raised; `schema_path` "" when none.
#[op2(fast)]
fn op_codemode_uncaught_tool_error(
    state: &mut OpState,
    #[string] tool: &str,
    #[string] schema_path: &str,
) {
    let schema_path = (!schema_path.is_empty()).then(|| schema_path.to_string());
    isolate(state).reports.borrow_mut().tool_error = Some((tool.to_string(), schema_path));
}

/// result: a call that failed with nobody awaiting it, as the glue words it.
#[op2(fast)]
fn op_codemode_unawaited_failure(state: &mut OpState, #[string] text: &str) {
    super::super::settle::keep_unawaited(&mut isolate(state).unawaited.borrow_mut(), text);
}

extension!(codemode_console, ops = [op_codemode_log]);
extension!(codemode_timers, ops = [op_codemode_sleep]);
extension!(codemode_tools, ops = [op_codemode_call_tool]);
extension!(codemode_fetch, ops = [op_codemode_fetch]);
extension!(
    codemode_result,
    ops = [
        op_codemode_output_error,
        op_codemode_uncaught_tool_error,
        op_codemode_unawaited_failure
    ]
);
extension!(
    codemode_glue,
    deps = [
        codemode_console,
        codemode_timers,
        codemode_tools,
        codemode_fetch,
        codemode_result
    ],
    esm_entry_point = "ext:codemode_glue/bootstrap.js",
);

/// Every extension an isolate of this engine has, in dependency order. `with_sources`
/// adds the shared glue's modules (only the snapshot needs them: an isolate made from the
/// snapshot already holds them).
pub(super) fn extensions(with_sources: bool) -> Vec<Extension> {
    let mut glue_extension = codemode_glue::init();
    let files = glue_extension.esm_files.to_mut();
    // In the binary, not read from the source tree (as deno_core's `esm = [dir ...]` does
    // in a build for snapshotting): the binary must run where it was not built, and a
    // locked-down worker may open no file.
    files.push(ExtensionFileSource::new_computed(
        "ext:codemode_glue/bootstrap.js",
        Arc::from(include_str!("bootstrap.js")),
    ));
    if with_sources {
        files.insert(
            0,
            ExtensionFileSource::new_computed(
                "ext:codemode_glue/glue.js",
                Arc::from(glue::module_source()),
            ),
        );
        files.insert(
            1,
            ExtensionFileSource::new_computed(
                "ext:codemode_glue/fetch.js",
                Arc::from(glue::fetch_module_source()),
            ),
        );
    }
    vec![
        codemode_console::init(),
        codemode_timers::init(),
        codemode_tools::init(),
        codemode_fetch::init(),
        codemode_result::init(),
        glue_extension,
    ]
}

#[cfg(test)]
mod tests {
    /// Every script an isolate evaluates is in the binary: one read from the source tree
    /// fails wherever the binary runs without it (an installed copy, a locked-down worker).
    #[test]
    fn every_script_is_in_the_binary() {
        for with_sources in [true, false] {
            for extension in super::extensions(with_sources) {
                for file in extension.esm_files.iter().chain(extension.js_files.iter()) {
                    #[allow(deprecated)]
                    let from_disk = matches!(
                        file.code,
                        deno_core::ExtensionFileSourceCode::LoadedFromFsDuringSnapshot(_)
                    );
                    assert!(
                        !from_disk,
                        "{} is read from the source tree",
                        file.specifier
                    );
                }
            }
        }
    }
}
