//! The JS glue every engine installs in a fresh isolate, before the program: the complete
//! list of what a program can reach beyond the language itself.
//!
//! Each file is an expression evaluating to `function (host) { ... }`. `host` is a plain
//! object of host functions that exists only while the glue runs: the glue closes over what
//! it needs, so the program never sees `host`.
//!
//! | file | installs | host functions it uses |
//! |---|---|---|
//! | `console.js` | `console` | `log(level, text)`, `wrapperLines`, `outputChars` |
//! | `timers.js` | `setTimeout`, `setInterval`, `clearTimeout`, `clearInterval` | `sleep(ms) -> Promise` |
//! | `web.js` | `structuredClone`, `TextEncoder`, `TextDecoder` where missing | none |
//! | `result.js` | nothing; returns `run(program) -> Promise<string>` | `outputError(message)` |

/// Capability glue, in installation order: (file name, source).
pub(crate) const CAPABILITIES: &[(&str, &str)] = &[
    ("console.js", include_str!("console.js")),
    ("timers.js", include_str!("timers.js")),
    ("web.js", include_str!("web.js")),
];

/// The glue that runs the program and converts its result.
pub(crate) const RESULT: (&str, &str) = ("result.js", include_str!("result.js"));

/// Globals a program has beyond the standard JS built-ins; named in errors such as
/// "x is not defined" so the model can correct itself.
pub(crate) const PROGRAM_GLOBALS: &[&str] = &[
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
pub(crate) const NOT_AVAILABLE: &str = "require, import(), process, Deno, fetch, the file system and the environment";
