//! The JS glue every engine installs in a fresh isolate, before the program: the complete
//! list of what a program can reach beyond the language itself.
//!
//! Each file is an expression evaluating to `function (host) { ... }`. `host` is a plain
//! object of host functions that exists only while the glue runs: the glue closes over what
//! it needs, so the program never sees `host`.
//!
//! | file | installs | host functions it uses |
//! |---|---|---|
//! | `stack.js` | `Error.prepareStackTrace`, with call sites that hold no function or receiver | none |
//! | `console.js` | `console` | `log(level, text)`, `wrapperLines`, `outputChars` |
//! | `timers.js` | `setTimeout`, `setInterval`, `clearTimeout`, `clearInterval` | `sleep(ms) -> Promise` |
//! | `web.js` | `structuredClone`, `TextEncoder`, `TextDecoder` where missing | none |
//! | `tools.js` | `tools`, `ToolError` | `bindings`, `callTool(ns, tool, argsJson, line, column) -> Promise<json>`; sets `raisedBy(error)`, the host's record of a ToolError it raised, `rejection(promise, reason, handled)`, which the engine calls as promises are rejected unhandled and handled later, and `reportUnawaited()`; uses `unawaitedFailure(text)` |
//! | `fetch.js` | `fetch`, `Headers`, `Request`, `Response`, only when egress is on (a module of its own) | `fetch(requestJson) -> Promise<json>` |
//! | `result.js` | nothing; returns `run(program) -> Promise<string>` | `outputError(message)`, `uncaughtToolError(tool, schemaPath)` |

/// Capability glue, in installation order.
const CAPABILITIES: &[&str] = &[
    include_str!("stack.js"),
    include_str!("console.js"),
    include_str!("timers.js"),
    include_str!("web.js"),
    include_str!("tools.js"),
];

/// `fetch.js`, a module of its own: only programs that have `fetch` pay for loading it
/// (it is most of the glue's bytecode).
const FETCH: &str = include_str!("fetch.js");

/// The name the fetch module carries in stack traces.
#[cfg_attr(not(feature = "quickjs"), allow(dead_code))]
pub(crate) const FETCH_MODULE_NAME: &str = "codemode:fetch";

/// The fetch glue as an ES module whose default export is `install(host)`.
pub(crate) fn fetch_module_source() -> String {
    format!("export default {};\n", FETCH.trim_end())
}

/// The glue that runs the program and converts its result.
const RESULT: &str = include_str!("result.js");

/// The name the glue module carries in stack traces.
#[cfg_attr(not(feature = "quickjs"), allow(dead_code))]
pub(crate) const MODULE_NAME: &str = "codemode:glue";

/// All glue as one ES module whose default export is `install(host) -> run`: engines
/// compile it once (to bytecode where they can) and instantiate it per isolate.
pub(crate) fn module_source() -> String {
    let mut source = String::from("const capabilities = [\n");
    for capability in CAPABILITIES {
        source.push_str(capability.trim_end());
        source.push_str(",\n");
    }
    source.push_str("];\nconst makeRun = ");
    source.push_str(RESULT.trim_end());
    source.push_str(
        ";\nexport default function install(host) {\n  for (const capability of capabilities) capability(host);\n  return makeRun(host);\n}\n",
    );
    source
}

/// Globals a program has beyond the standard JS built-ins; named in errors such as
/// "x is not defined" so the model can correct itself.
pub(crate) const PROGRAM_GLOBALS: &[&str] = &[
    "tools",
    "ToolError",
    "console",
    "setTimeout",
    "clearTimeout",
    "setInterval",
    "clearInterval",
    "queueMicrotask",
    "structuredClone",
    "TextEncoder",
    "TextDecoder",
    "atob",
    "btoa",
    "performance",
];

/// What a program does not have, named in the same errors.
pub(crate) const NOT_AVAILABLE: &str = "require, import(), process, Deno, the file system, the environment, and fetch unless the server's egress rules (codemode.egress) allow some URL";
