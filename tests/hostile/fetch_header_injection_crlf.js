// expect: ok
// result: "TypeError"
// timeoutMs: 3000
try { await fetch('${WEB}/json', { headers: { 'X-A': 'a\r\nHost: evil' } }); return 'sent'; } catch (e) { return e.name; }
