// tools: `tools.<namespace>.<tool>(args)` for every binding, and `ToolError`. Each call
// crosses into the host as JSON text (host.callTool) and comes back as JSON text; nothing
// else of the host is reachable. Installs: tools, ToolError.
(function (host) {
  "use strict";
  // Taken before the program runs: a program that replaces JSON's methods cannot change
  // what crosses to the host.
  const { stringify: jsonStringify, parse: jsonParse } = JSON;

  class ToolError extends Error {
    constructor(message, tool, schemaPath) {
      super(message);
      this.name = "ToolError";
      this.tool = tool;
      if (schemaPath) this.schemaPath = schemaPath;
    }
  }
  Object.defineProperty(globalThis, "ToolError", { value: ToolError, writable: true, configurable: true });

  // ToolErrors this glue raised, so the host can tell an uncaught one from a look-alike.
  const raised = new WeakSet();
  host.isToolError = (error) => raised.has(error);

  function failure(message, tool, schemaPath, site) {
    const error = new ToolError(message, tool, schemaPath);
    // Point at the program's line that made the call, not at this glue.
    if (site && site.stack) error.stack = site.stack;
    raised.add(error);
    return error;
  }

  function describe(value) {
    if (value === null) return "null";
    if (Array.isArray(value)) return "an array";
    return "a " + typeof value;
  }

  function bind(namespace, name) {
    const qualified = namespace + "." + name;
    const call = function (args) {
      const site = new Error();
      if (args === undefined) args = {};
      if (args === null || typeof args !== "object" || Array.isArray(args)) {
        return Promise.reject(failure("tools." + qualified + ": the arguments must be one object, such as { key: value }, not " + describe(args), qualified, undefined, site));
      }
      let text;
      try {
        text = jsonStringify(args);
      } catch (error) {
        return Promise.reject(failure("tools." + qualified + ": the arguments cannot be sent as JSON: " + error.message, qualified, undefined, site));
      }
      return host.callTool(namespace, name, text).then((reply) => {
        const answer = jsonParse(reply);
        if (answer.error) throw failure(answer.error.message, qualified, answer.error.schemaPath, site);
        return answer.ok;
      });
    };
    Object.defineProperty(call, "name", { value: name });
    return call;
  }

  // Unknown names throw a ToolError listing the valid ones instead of "not a function".
  function guarded(target, path) {
    return new Proxy(Object.freeze(target), {
      get(object, key) {
        if (typeof key === "symbol" || key in object || key === "then" || key === "toJSON") return object[key];
        const names = Object.keys(object);
        throw failure(
          path + "." + String(key) + " does not exist. " +
            (names.length ? path + " has: " + names.join(", ") + "." : path + " is empty: no tools are available."),
          path + "." + String(key),
          undefined,
          new Error(),
        );
      },
    });
  }

  const tools = {};
  for (const binding of host.bindings) {
    const space = {};
    for (const name of binding.tools) space[name] = bind(binding.namespace, name);
    tools[binding.namespace] = guarded(space, "tools." + binding.namespace);
  }
  Object.defineProperty(globalThis, "tools", { value: guarded(tools, "tools"), writable: true, configurable: true });
})
