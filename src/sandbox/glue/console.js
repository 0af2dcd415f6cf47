// console: formats arguments like a terminal would and hands each line to the host, which
// keeps it in order under the output cap. Installs: console.
(function (host) {
  "use strict";
  // Taken before the program runs: a program that replaces JSON's methods cannot change
  // what crosses to the host.
  const { stringify: jsonStringify } = JSON;
  const WRAPPER_LINES = host.wrapperLines;

  // Stack positions in the agent's own lines, not the wrapper's.
  function agentStack(stack) {
    return String(stack).replace(/program\.ts:(\d+):/g,
      (_, line) => "program.ts:" + Math.max(1, Number(line) - WRAPPER_LINES) + ":");
  }

  function inspect(value, depth, seen) {
    switch (typeof value) {
      case "string": return depth === 0 ? value : jsonStringify(value);
      case "bigint": return value + "n";
      case "symbol": return value.toString();
      case "function": return "[Function " + (value.name || "(anonymous)") + "]";
      case "object": break;
      default: return String(value);
    }
    if (value === null) return "null";
    if (value instanceof Error) {
      const head = value.name + ": " + value.message;
      return value.stack ? head + "\n" + agentStack(value.stack).trimEnd() : head;
    }
    if (seen.includes(value)) return "[Circular]";
    if (depth > 4) return Array.isArray(value) ? "[Array]" : "[Object]";
    seen.push(value);
    try {
      if (Array.isArray(value)) {
        return "[" + value.map((v) => inspect(v, depth + 1, seen)).join(", ") + "]";
      }
      if (value instanceof Map) {
        const items = [];
        for (const [k, v] of value) items.push(inspect(k, depth + 1, seen) + " => " + inspect(v, depth + 1, seen));
        return "Map(" + value.size + ") {" + items.join(", ") + "}";
      }
      if (value instanceof Set) {
        const items = [];
        for (const v of value) items.push(inspect(v, depth + 1, seen));
        return "Set(" + value.size + ") {" + items.join(", ") + "}";
      }
      if (value instanceof Date) return isNaN(value) ? "Invalid Date" : value.toISOString();
      if (value instanceof RegExp) return String(value);
      if (value instanceof Promise) return "Promise {}";
      const keys = Object.keys(value);
      if (keys.length === 0) return "{}";
      return "{ " + keys.map((k) => {
        const name = /^[A-Za-z_$][\w$]*$/.test(k) ? k : jsonStringify(k);
        return name + ": " + inspect(value[k], depth + 1, seen);
      }).join(", ") + " }";
    } catch (e) {
      return "[Uninspectable]";
    } finally {
      seen.pop();
    }
  }

  function format(args) {
    let text = "";
    for (let i = 0; i < args.length; i++) {
      if (i > 0) text += " ";
      text += inspect(args[i], 0, []);
    }
    return text;
  }

  // A single huge line is cut here so it never has to cross into the host whole.
  function log(level, text) {
    if (!host.log(level, text.length > host.outputChars ? text.slice(0, host.outputChars) : text)) full = true;
  }

  // Once the host keeps no more lines, a line is only counted: a flood of console calls
  // costs no formatting past the cap.
  let full = false;
  const hostLog = host.log;
  function emit(level) {
    return function (...args) {
      if (full) {
        hostLog(level, "");
        return;
      }
      log(level, format(args));
    };
  }

  const counts = new Map();
  const timers = new Map();
  const console = {
    log: emit("log"),
    info: emit("info"),
    warn: emit("warn"),
    error: emit("error"),
    debug: emit("debug"),
    trace: emit("debug"),
    dir: (value) => log("log", inspect(value, 0, [])),
    table: (value) => log("log", inspect(value, 1, [])),
    assert(condition, ...args) {
      if (!condition) log("error", "Assertion failed" + (args.length ? ": " + format(args) : ""));
    },
    count(label = "default") {
      const n = (counts.get(label) || 0) + 1;
      counts.set(label, n);
      log("log", label + ": " + n);
    },
    time(label = "default") { timers.set(label, Date.now()); },
    timeEnd(label = "default") {
      if (timers.has(label)) log("log", label + ": " + (Date.now() - timers.get(label)) + "ms");
      timers.delete(label);
    },
  };
  Object.defineProperty(globalThis, "console", { value: console, writable: true, configurable: true });
})
