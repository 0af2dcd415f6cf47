// expect: ok
// result: "TypeError"
// timeoutMs: 15000
try { await fetch('${WEB}/json', { headers: { 'X-A': 'a\r\nHost: evil' } }); return 'sent'; } catch (e) { return e.name; }
