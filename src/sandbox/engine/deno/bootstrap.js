// The deno_core engine's only JS of its own: it builds the `host` object the shared glue
// (src/sandbox/glue/) expects out of this engine's ops, one extension per capability, and
// takes deno_core's own globals away before any program runs. Evaluated once, into the
// startup snapshot; `install` runs once per isolate.
import installGlue from "ext:codemode_glue/glue.js";
import installFetch from "ext:codemode_glue/fetch.js";

const core = globalThis.Deno.core;
const {
  op_codemode_log,
  op_codemode_sleep,
  op_codemode_call_tool,
  op_codemode_fetch,
  op_codemode_output_error,
  op_codemode_unawaited_failure,
  op_codemode_uncaught_tool_error,
} = core.ops;
// Taken now: a program cannot change how the envelope is written.
const { stringify: jsonStringify, parse: jsonParse } = JSON;
const toText = String;
const stringSlice = String.prototype.slice, apply = Reflect.apply;
// What of a thrown value's texts crosses to the host, which cuts them far shorter for the
// answer: the envelope of a 40 MB message would not fit the heap (the default engine cuts
// them on its side too).
const DESCRIBED_CHARS = 1 << 16;
function clip(value) {
  const text = toText(value);
  if (text.length <= DESCRIBED_CHARS) return text;
  // Never half a surrogate pair: the host refuses JSON with a lone one.
  const last = text.charCodeAt(DESCRIBED_CHARS - 1);
  const end = last >= 0xd800 && last <= 0xdbff ? DESCRIBED_CHARS - 1 : DESCRIBED_CHARS;
  return apply(stringSlice, text, [0, end]);
}

// deno_core treats an unhandled rejection as fatal to the event loop; the default engine
// ignores it, and so must this one (a program that starts a promise and never awaits it
// still returns its value).
core.setUnhandledPromiseRejectionHandler(() => true);

function describe(error) {
  try {
    if (error !== null && (typeof error === "object" || typeof error === "function")) {
      const message = error.message;
      if (message !== undefined && message !== null) {
        const name = error.name, stack = error.stack;
        return {
          name: name === undefined || name === null ? null : clip(name),
          message: clip(message),
          stack: stack === undefined || stack === null ? null : clip(stack),
        };
      }
    }
    return { name: null, message: "the program threw a non-Error value: " + clip(error), stack: null };
  } catch (ignored) {
    return { name: null, message: "the program threw a value that cannot be shown", stack: null };
  }
}

// Per isolate, before its program: `config` is the isolate's bindings and limits as JSON.
// Returns `settle(program) -> Promise<string>`: "v" + the result's JSON text, or "t" + the
// thrown value described as JSON, so the host never reads a program's object itself.
globalThis.__codemodeInstall = function install(configJson) {
  delete globalThis.__codemodeInstall;
  // What a program must not reach: deno_core's ops (some write to stdout or to resources)
  // and its bootstrap objects.
  delete globalThis.Deno;
  delete globalThis.__bootstrap;
  delete globalThis.__infra;
  delete globalThis.console;
  // What the default engine does not have either, and no program needs: WebAssembly (an
  // interpreter more to reach), ShadowRealm (a second global without the glue), the
  // backend's `gc` and its Temporal polyfill with the slots it keeps on the global.
  delete globalThis.WebAssembly;
  delete globalThis.ShadowRealm;
  delete globalThis.gc;
  delete globalThis.Temporal;
  for (const symbol of Object.getOwnPropertySymbols(globalThis)) {
    if (symbol !== Symbol.toStringTag) delete globalThis[symbol];
  }
  // A program has one thread: blocking it would hold an isolate thread past any deadline
  // (a wait cannot be terminated). The default engine refuses to block as well.
  if (typeof Atomics === "object") {
    Object.defineProperty(Atomics, "wait", {
      value: function wait() {
        throw new TypeError("Atomics.wait cannot block here: a program has one thread; use await instead");
      },
      writable: true,
      configurable: true,
    });
  }
  // deno_core's async op stubs call `op.call(this, ...)`: a program that replaced
  // Function.prototype.call would change what its own tool calls return (never what
  // reaches the host). It stays the engine's.
  Object.defineProperty(Function.prototype, "call", { writable: false, configurable: false });

  const config = jsonParse(configJson);
  const host = {
    bindings: config.bindings,
    wrapperLines: config.wrapperLines,
    outputChars: config.outputChars,
    log: (level, text) => op_codemode_log(toText(level), toText(text)),
    sleep: (ms) => op_codemode_sleep(ms),
    callTool: (namespace, tool, args, line, column) =>
      op_codemode_call_tool(namespace, tool, args, line === undefined ? 0 : line, column === undefined ? 0 : column),
    outputError: (message) => op_codemode_output_error(toText(message)),
    unawaitedFailure: (text) => op_codemode_unawaited_failure(toText(text)),
    uncaughtToolError: (tool, schemaPath) =>
      op_codemode_uncaught_tool_error(toText(tool), schemaPath === null || schemaPath === undefined ? "" : toText(schemaPath)),
  };
  if (config.fetch) host.fetch = (request) => op_codemode_fetch(request);
  const run = installGlue(host);
  // Unhandled rejections are not fatal here either, and the glue hears of each, and of a
  // handler attached later, so that a failed call nobody awaited reaches the answer.
  const rejection = host.rejection;
  core.setUnhandledPromiseRejectionHandler((promise, reason) => {
    rejection(promise, reason, false);
    return true;
  });
  core.setHandledPromiseRejectionHandler((promise, reason) => rejection(promise, reason, true));
  if (config.fetch) installFetch(host);

  return async function settle(program) {
    try {
      return "v" + (await run(program));
    } catch (error) {
      return "t" + jsonStringify(describe(error));
    }
  };
};
