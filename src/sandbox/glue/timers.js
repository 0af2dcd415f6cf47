// timers: setTimeout / setInterval on top of the host's sleep, which is the only thing that
// crosses into Rust. The host's wall clock covers pending timers. Installs: setTimeout,
// clearTimeout, setInterval, clearInterval.
(function (host) {
  "use strict";
  const active = new Set();
  let nextId = 1;

  function schedule(name, repeat, callback, ms, args) {
    if (typeof callback !== "function") {
      throw new TypeError(name + ": the callback must be a function (strings are not evaluated)");
    }
    const delay = Math.max(0, Number(ms) || 0);
    const id = nextId++;
    active.add(id);
    const tick = () => host.sleep(delay).then(() => {
      if (!active.has(id)) return;
      if (!repeat) active.delete(id);
      try {
        callback(...args);
      } catch (error) {
        console.error("Uncaught error in a " + name + " callback:", error);
      }
      if (repeat && active.has(id)) tick();
    });
    tick();
    return id;
  }

  function clear(id) { active.delete(id); }

  globalThis.setTimeout = (callback, ms, ...args) => schedule("setTimeout", false, callback, ms, args);
  globalThis.setInterval = (callback, ms, ...args) => schedule("setInterval", true, callback, ms, args);
  globalThis.clearTimeout = clear;
  globalThis.clearInterval = clear;
})
