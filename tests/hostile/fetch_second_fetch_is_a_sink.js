// expect: ok
// result: true
// timeoutMs: 15000
await fetch('${WEB}/json');
return await fetch('${WEB}/echo', { method: 'POST', body: 'exfil' }).then(() => 'sent', (e) => e.message.includes('untrusted'));
