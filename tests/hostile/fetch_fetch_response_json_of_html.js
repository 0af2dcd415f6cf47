// expect: ok
// result: "SyntaxError"
// timeoutMs: 15000
const r = await fetch('${WEB}/bytes');
try { await r.json(); } catch (e) { return e.name; }
