// expect: ok
// result: "TypeError"
// timeoutMs: 15000
const u = ['${WEB}@evil.example/'][0];
return await fetch(u).then(() => 'reached', (e) => e.name);
