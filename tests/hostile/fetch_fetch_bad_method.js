// expect: ok
// result: "TypeError"
// timeoutMs: 15000
return await fetch('${WEB}/json', { method: 'CONNECT' }).then(() => 'sent', (e) => e.name);
