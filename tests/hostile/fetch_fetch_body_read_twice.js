// expect: ok
// result: "TypeError"
// timeoutMs: 15000
const r = await fetch('${WEB}/json');
await r.text();
try { await r.text(); } catch (e) { return e.name; }
