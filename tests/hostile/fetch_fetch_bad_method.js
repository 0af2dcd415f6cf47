// expect: ok
// result: "TypeError"
// timeoutMs: 3000
return await fetch('${WEB}/json', { method: 'CONNECT' }).then(() => 'sent', (e) => e.name);
