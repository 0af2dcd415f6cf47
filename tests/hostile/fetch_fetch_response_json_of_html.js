// expect: ok
// result: "SyntaxError"
// timeoutMs: 3000
const r = await fetch('${WEB}/bytes');
try { await r.json(); } catch (e) { return e.name; }
