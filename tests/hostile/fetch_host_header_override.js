// expect: ok
// result: true
// timeoutMs: 15000
const r = await (await fetch('${WEB}/echo', { headers: { Host: 'evil.example' } })).json();
return r.headers.host.startsWith('127.0.0.1');
