// expect: ok
// result: "TypeError"
// timeoutMs: 3000
try { await fetch('${WEB}/json', { body: 'x' }); } catch (e) { return e.name; }
