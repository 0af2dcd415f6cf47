// expect: ok
// result: "TypeError"
// timeoutMs: 15000
try { await fetch('${WEB}/json', { body: 'x' }); } catch (e) { return e.name; }
