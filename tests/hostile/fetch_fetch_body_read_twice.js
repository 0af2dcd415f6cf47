// expect: ok
// result: "TypeError"
// timeoutMs: 3000
const r = await fetch('${WEB}/json');
await r.text();
try { await r.text(); } catch (e) { return e.name; }
