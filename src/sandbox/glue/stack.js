// stack: V8's stack API (`Error.prepareStackTrace`, which QuickJS-ng has too), with call
// sites that carry positions and names only. The engine's own CallSite hands out each
// frame's function, and the frames of a tool call are the glue's: a program holding those
// could call the glue past its checks. Installs: Error.prepareStackTrace (an accessor).
(function (host) {
  "use strict";
  const descriptor = Object.getOwnPropertyDescriptor(Error, "prepareStackTrace");
  if (!descriptor || typeof descriptor.set !== "function") return;
  const setEngine = descriptor.set;
  const apply = Reflect.apply, freeze = Object.freeze, defineProperty = Object.defineProperty;

  // The engine's CallSite methods, taken before the program runs: a program cannot
  // replace what a call site reads.
  let methods = null;
  apply(setEngine, Error, [(error, frames) => frames]);
  try {
    const frames = new Error().stack;
    if (frames && frames.length) methods = Object.getPrototypeOf(frames[0]);
  } finally {
    apply(setEngine, Error, [undefined]);
  }
  if (!methods) return;
  const read = {};
  for (const name of ["getFileName", "getLineNumber", "getColumnNumber", "getFunctionName", "isNative", "isConstructor"]) {
    read[name] = typeof methods[name] === "function" ? methods[name] : undefined;
  }

  function field(frame, name) {
    const method = read[name];
    if (method === undefined) return undefined;
    try {
      return apply(method, frame, []);
    } catch (ignored) {
      return undefined;
    }
  }

  // A call site with plain values: no function, no receiver.
  function site(frame) {
    const fileName = field(frame, "getFileName"), line = field(frame, "getLineNumber");
    const column = field(frame, "getColumnNumber"), functionName = field(frame, "getFunctionName");
    const native = field(frame, "isNative"), constructor = field(frame, "isConstructor");
    return freeze({
      getFileName: () => fileName,
      getLineNumber: () => line,
      getColumnNumber: () => column,
      getFunctionName: () => functionName,
      getMethodName: () => null,
      getTypeName: () => null,
      getEvalOrigin: () => undefined,
      getFunction: () => undefined,
      getThis: () => undefined,
      isNative: () => native,
      isConstructor: () => constructor,
      isToplevel: () => false,
      isEval: () => false,
      isAsync: () => false,
      isPromiseAll: () => false,
      getPromiseIndex: () => null,
      toString: () => (functionName ? functionName + " (" : "") + fileName + ":" + line + ":" + column + (functionName ? ")" : ""),
    });
  }

  let program;
  function prepare(error, frames) {
    const sites = [];
    for (let i = 0; i < frames.length; i++) sites[i] = site(frames[i]);
    return apply(program, Error, [error, freeze(sites)]);
  }

  defineProperty(Error, "prepareStackTrace", {
    get() {
      return program;
    },
    set(value) {
      program = value;
      apply(setEngine, Error, [typeof value === "function" ? prepare : value]);
    },
    enumerable: descriptor.enumerable,
    configurable: false,
  });
})
