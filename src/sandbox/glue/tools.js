// tools: `tools.<namespace>.<tool>(args)` for every binding, and `ToolError`. Each call
// crosses into the host as JSON text (host.callTool) and comes back as JSON text; nothing
// else of the host is reachable. Installs: tools, ToolError.
(function (host) {
  "use strict";
  // Taken before the program runs: a program that replaces JSON's methods cannot change
  // what crosses to the host.
  const { stringify: jsonStringify, parse: jsonParse } = JSON;
  const WRAPPER_LINES = host.wrapperLines;
  const callTool = host.callTool;

  // Taken before the program runs, like JSON's: a program that replaces them cannot change
  // how calls are made or replies read.
  const apply = Reflect.apply;
  const hasOwn = Object.hasOwn;
  const { create, defineProperty, freeze, keys } = Object;
  const regexExec = RegExp.prototype.exec;
  const weakGet = WeakMap.prototype.get, weakSet = WeakMap.prototype.set;
  const toText = String, toNumber = Number, max = Math.max;
  const stringSlice = String.prototype.slice;
  // A name the program made up, as errors and the host's records show it: its head.
  function clip(text) {
    return text.length > 200 ? apply(stringSlice, text, [0, 200]) + "..." : text;
  }
  const SITE = /program\.ts:(\d+):(\d+)/;

  // The program's line:column that made a call, for the user asked to confirm it.
  function siteOf(error) {
    try {
      const match = apply(regexExec, SITE, [toText(error.stack)]);
      if (match) {
        const line = max(1, toNumber(match[1]) - WRAPPER_LINES), column = toNumber(match[2]);
        if (line === line && column === column) return { line, column };
      }
    } catch (ignored) {
      // A stack the program tampered with has no site; the call goes on without one.
    }
    return { line: undefined, column: undefined };
  }

  // The stack of a call site as the program should see it: its own frames only. Lines stay
  // as the engine numbers them, like every stack in the isolate: console output and the
  // final error map them to the agent's source.
  function programStack(name, message, site) {
    try {
      const frames = toText(site.stack)
        .split("\n")
        .filter((line) => line.includes("program.ts:"));
      return name + ": " + message + "\n" + frames.join("\n") + (frames.length ? "\n" : "");
    } catch (ignored) {
      return site.stack;
    }
  }

  class ToolError extends Error {
    constructor(message, tool, schemaPath) {
      super(message);
      this.name = "ToolError";
      this.tool = tool;
      if (schemaPath) this.schemaPath = schemaPath;
    }
  }
  Object.defineProperty(globalThis, "ToolError", { value: ToolError, writable: true, configurable: true });

  // ToolErrors this glue raised, with the tool and schema path as the host answered them,
  // so the host can tell an uncaught one from a look-alike and name its tool from its own
  // record: a program may rewrite a caught error's `tool` before throwing it on.
  const raised = new WeakMap();
  host.raisedBy = (error) => apply(weakGet, raised, [error]);

  // Calls whose failure nobody awaits: the engine reports each promise rejected with no
  // handler, and again once one is attached. Those still unhandled when the program ends
  // reach the answer as hints, so that a failure the program dropped is not silent. A few
  // are kept: a loop of them says as much in its first.
  const MAX_UNAWAITED = 5;
  const unhandled = new Map();
  const mapSet = Map.prototype.set, mapDelete = Map.prototype.delete;
  const mapValues = Map.prototype.values, mapSize = Object.getOwnPropertyDescriptor(Map.prototype, "size").get;
  const iteratorNext = Object.getPrototypeOf(new Map().values()).next;
  // Only what the glue recorded when it raised the error is read (never the error's own
  // fields, which a program that saw it may have turned into getters), and nothing here may
  // throw into the engine's rejection machinery.
  host.rejection = (promise, reason, handled) => {
    try {
      if (handled) {
        apply(mapDelete, unhandled, [promise]);
        return;
      }
      const record = apply(weakGet, raised, [reason]);
      if (record === undefined || apply(mapSize, unhandled, []) >= MAX_UNAWAITED) return;
      const at = record.line === undefined ? "" : " at " + record.line + ":" + record.column;
      const shown = "tools." + record.tool;
      apply(mapSet, unhandled, [promise, shown + " failed" + at + " but the program did not await it: " + clip500(unprefixed(record.message, shown)) + ". Await every call (or Promise.all them) so that a failure reaches the program"]);
    } catch (ignored) {
      // A hint is lost; the run goes on.
    }
  };
  // Hands each failure still unhandled to the host, at most MAX_UNAWAITED, through the
  // host function taken now (a program cannot reach or replace it).
  const unawaitedFailure = host.unawaitedFailure;
  host.reportUnawaited = () => {
    const values = apply(mapValues, unhandled, []);
    let reported = 0;
    for (let next = apply(iteratorNext, values, []); !next.done && reported < MAX_UNAWAITED; next = apply(iteratorNext, values, [])) {
      unawaitedFailure(next.value);
      reported++;
    }
  };
  // A failure's message without the call's name, which the hint already starts with.
  function unprefixed(message, shown) {
    // No for-of: the program may have replaced the array iterator.
    const plain = shown + ": ", failed = shown + " failed: ";
    if (apply(stringSlice, message, [0, plain.length]) === plain) return apply(stringSlice, message, [plain.length]);
    if (apply(stringSlice, message, [0, failed.length]) === failed) return apply(stringSlice, message, [failed.length]);
    return message;
  }
  function clip500(text) {
    return text.length > 500 ? apply(stringSlice, text, [0, 500]) + "..." : text;
  }

  // What the glue's own errors are built from, taken before the program runs: a program
  // may re-parent ToolError (so that `super` calls its function) or put setters on
  // Error.prototype for the fields set here, and none of that may run, or choose the
  // object thrown, while the glue reports a failed call.
  const construct = Reflect.construct;
  const BaseError = Error;
  function own(object, key, value, enumerable) {
    defineProperty(object, key, { value, writable: true, configurable: true, enumerable });
  }

  // Calls that failed so far: when none did, no rejection can be a dropped failure.
  let failures = 0;
  host.failures = () => failures;

  function failure(message, tool, schemaPath, site) {
    failures++;
    const error = construct(BaseError, [toText(message)], ToolError);
    own(error, "name", "ToolError", true);
    own(error, "tool", tool, true);
    if (schemaPath) own(error, "schemaPath", schemaPath, true);
    // Point at the program's line that made the call, not at this glue.
    if (site && site.stack) own(error, "stack", programStack("ToolError", message, site), false);
    // The call's own site (the glue's error, whose message is empty: no text of the
    // failure can fake a position).
    const where = site ? siteOf(site) : { line: undefined, column: undefined };
    apply(weakSet, raised, [error, freeze({
      tool: toText(tool),
      schemaPath: schemaPath ? toText(schemaPath) : null,
      message: clip500(toText(message)),
      line: where.line,
      column: where.column,
    })]);
    return error;
  }

  // A call the glue refuses itself still reaches the host, as a refusal (never as a
  // call), so the host's record, and only it, says that a call failed: the calls list,
  // the audit log and the error's kind. The marker cannot begin any JSON text.
  function refused(namespace, name, message, site) {
    const where = siteOf(site);
    try {
      callTool(namespace, name, "\u0000" + message, where.line, where.column);
    } catch (ignored) {
      // The host keeps no record when it cannot take one; the program still gets its error.
    }
  }

  function describe(value) {
    if (value === null) return "null";
    if (Array.isArray(value)) return "an array";
    return "a " + typeof value;
  }

  function bind(namespace, name) {
    const qualified = namespace + "." + name;
    // Async, so that awaiting the reply uses the engine's own promise machinery: a program
    // that replaces Promise.prototype.then cannot change what a call returns.
    const call = async function (args) {
      const site = new BaseError();
      if (args === undefined) args = {};
      if (args === null || typeof args !== "object" || Array.isArray(args)) {
        const message = "tools." + qualified + ": the arguments must be one object, such as { key: value }, not " + describe(args);
        refused(namespace, name, message, site);
        throw failure(message, qualified, undefined, site);
      }
      let text;
      try {
        text = jsonStringify(args);
      } catch (error) {
        const message = "tools." + qualified + ": the arguments cannot be sent as JSON: " + toText(error && error.message);
        refused(namespace, name, message, site);
        throw failure(message, qualified, undefined, site);
      }
      const where = siteOf(site);
      const answer = jsonParse(await callTool(namespace, name, text, where.line, where.column));
      if (hasOwn(answer, "error")) throw failure(answer.error.message, qualified, answer.error.schemaPath, site);
      return answer.ok;
    };
    Object.defineProperty(call, "name", { value: name });
    return call;
  }

  // Unknown names throw a ToolError listing the valid ones instead of "not a function".
  // Never thenable nor serialisable by a method of its own, whatever names it holds: `await
  // tools.ns` and `JSON.stringify(tools)` must not call a tool. `namespace` is undefined for
  // `tools` itself.
  function guarded(target, path, namespace, unavailable) {
    return new Proxy(freeze(target), {
      get(object, key) {
        if (key === "then" || key === "toJSON") return undefined;
        // What every object has (`toString`, `hasOwnProperty`, ...) is not a tool name (the
        // catalog maps such names): reading it is no call, and no refusal.
        if (typeof key === "string" && !hasOwn(object, key) && inherited[key] === true) return undefined;
        if (typeof key === "symbol" || hasOwn(object, key)) return object[key];
        const names = keys(object);
        const site = new BaseError();
        const shown = clip(toText(key));
        const listed = names.length ? path + " has: " + names.join(", ") + "." : path + " is empty: no tools are available.";
        // A server that is down or still connecting may have tools it has not listed: say
        // so, not just that the name is unknown.
        const message = unavailable
          ? path + "." + shown + " cannot be called now: " + unavailable + ". " +
            (names.length ? path + " has, as last listed: " + names.join(", ") + "." : "It has listed no tools yet.") +
            " Try again later, or do the task without it."
          : path + "." + shown + " does not exist. " + listed;
        // No destructuring: it would go through the array iterator, which the program may
        // have replaced.
        const top = namespace === undefined;
        const space = top ? shown : namespace, name = top ? "" : shown;
        refused(space, name, message, site);
        throw failure(message, top ? space : space + "." + name, undefined, site);
      },
    });
  }

  // Objects without a prototype, filled by definition rather than assignment: a name such as
  // `__proto__` or `constructor` is then a property like any other, never the prototype or a
  // shadowed built-in. `then` and `toJSON` are never held (the catalog maps them to other
  // names): the proxy could not hide them.
  function define(object, name, value, enumerable) {
    if (name === "then" || name === "toJSON" || hasOwn(object, name)) return;
    defineProperty(object, name, { value, enumerable, writable: false, configurable: false });
  }

  // Object.prototype's names, taken before the program could add any.
  const inherited = create(null);
  for (const name of Object.getOwnPropertyNames(Object.prototype)) inherited[name] = true;

  const tools = create(null);
  for (const binding of host.bindings) {
    const space = create(null);
    for (const name of binding.tools) define(space, name, bind(binding.namespace, name), true);
    // The MCP names that are not JS names reach the same functions, unlisted: what
    // `Object.keys` and the errors show is what the declarations show.
    for (const alias of binding.aliases) {
      if (hasOwn(space, alias.tool)) define(space, alias.name, space[alias.tool], false);
    }
    define(tools, binding.namespace, guarded(space, "tools." + binding.namespace, binding.namespace, binding.unavailable), true);
    if (binding.global && !(binding.namespace in globalThis)) {
      Object.defineProperty(globalThis, binding.namespace, { value: tools[binding.namespace], writable: true, configurable: true });
    }
  }
  // Discovery, answered by the host from the index search_tools uses, so that a program
  // can find and call a tool it was not shown. No namespace begins with `$`, and
  // `Object.keys(tools)` lists namespaces only.
  function discovery(name, request) {
    const call = async function (first, second) {
      const site = new BaseError();
      const where = siteOf(site);
      const answer = jsonParse(await callTool("$", name, jsonStringify(request(first, second)), where.line, where.column));
      if (hasOwn(answer, "error")) throw failure(answer.error.message, "$" + name, undefined, site);
      return answer.ok;
    };
    defineProperty(call, "name", { value: "$" + name });
    return call;
  }
  const text = (value) => (typeof value === "string" ? value : null);
  define(tools, "$search", discovery("search", (query, options) => ({
    query: text(query),
    limit: options !== null && typeof options === "object" && typeof options.limit === "number" ? options.limit : null,
  })), false);
  define(tools, "$describe", discovery("describe", (name) => ({ name: text(name) })), false);
  Object.defineProperty(globalThis, "tools", { value: guarded(tools, "tools"), writable: true, configurable: true });
})
