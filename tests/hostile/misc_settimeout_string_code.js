// expect: ok
// timeoutMs: 1000
try { setTimeout('globalThis.x = 1', 0); } catch (e) { return e.name; }
await new Promise((r) => setTimeout(r, 5));
return typeof x;
