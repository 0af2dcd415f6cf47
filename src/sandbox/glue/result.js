// result: runs the agent's program and turns its returned value into JSON text. Values JSON
// would silently drop or mangle (functions, BigInt, cycles) are reported with their path
// through host.outputError, so the host knows the failure is the result's, not the program's.
// Returns: run(program) -> Promise<string>.
(function (host) {
  "use strict";
  // Taken before the program runs: a program that replaces JSON's methods cannot change
  // what crosses to the host.
  const { stringify: jsonStringify } = JSON;

  function fail(message) {
    host.outputError(message);
    return new Error(message);
  }

  function key(path, k) {
    return /^[A-Za-z_$][\w$]*$/.test(k) ? path + "." + k : path + "[" + jsonStringify(k) + "]";
  }

  function plain(value, path, ancestors, paths) {
    switch (typeof value) {
      case "undefined": return undefined;
      case "number": return Number.isFinite(value) ? value : null;
      case "string":
      case "boolean": return value;
      case "bigint":
        throw fail(path + " is a BigInt (" + value + "n), which JSON cannot represent: return Number(x) or String(x) instead");
      case "function":
        throw fail(path + " is a function, which JSON cannot represent: return data, not functions");
      case "symbol":
        throw fail(path + " is a symbol, which JSON cannot represent: return a string instead");
    }
    if (value === null) return null;
    const at = ancestors.indexOf(value);
    if (at !== -1) {
      throw fail(path + " refers back to " + paths[at] + " (a cycle), which JSON cannot represent: return a copy without the back-reference");
    }
    if (value instanceof Promise) {
      throw fail(path + " is a Promise: await it before returning");
    }
    if (typeof value.toJSON === "function") {
      return plain(value.toJSON(), path, ancestors, paths);
    }
    ancestors.push(value);
    paths.push(path);
    try {
      if (Array.isArray(value) || (ArrayBuffer.isView(value) && !(value instanceof DataView))) {
        const out = [];
        for (let i = 0; i < value.length; i++) {
          const item = plain(value[i], path + "[" + i + "]", ancestors, paths);
          out.push(item === undefined ? null : item);
        }
        return out;
      }
      if (value instanceof Map) {
        const out = {};
        for (const [k, v] of value) {
          const item = plain(v, key(path, String(k)), ancestors, paths);
          if (item !== undefined) out[String(k)] = item;
        }
        return out;
      }
      if (value instanceof Set) {
        const out = [];
        let i = 0;
        for (const v of value) {
          const item = plain(v, path + "[" + i++ + "]", ancestors, paths);
          out.push(item === undefined ? null : item);
        }
        return out;
      }
      if (value instanceof Error) {
        return { name: value.name, message: value.message };
      }
      const out = {};
      for (const k of Object.keys(value)) {
        const item = plain(value[k], key(path, k), ancestors, paths);
        if (item !== undefined) out[k] = item;
      }
      return out;
    } finally {
      ancestors.pop();
      paths.pop();
    }
  }

  // Calls that failed with nobody awaiting them, for the answer's hints. An engine may
  // report a turn's unhandled rejections only once the turn is over (deno_core does): when
  // a call failed, one more turn passes first, so that a failure in the program's last
  // turn is heard too.
  // (Timers the program left may run in that turn, as they would have while it ran.)
  async function reportUnawaited() {
    if (host.failures() > 0) await host.sleep(0);
    host.reportUnawaited();
  }

  return async function run(program) {
    let value;
    try {
      value = await program();
    } catch (error) {
      await reportUnawaited();
      const raised = host.raisedBy(error);
      if (raised) host.uncaughtToolError(raised.tool, raised.schemaPath);
      throw error;
    }
    await reportUnawaited();
    const out = plain(value, "result", [], []);
    return out === undefined ? "null" : jsonStringify(out);
  };
})
