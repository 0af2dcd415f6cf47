// expect: ok
// result: "TypeError"
// timeoutMs: 3000
const u = ['${WEB}@evil.example/'][0];
return await fetch(u).then(() => 'reached', (e) => e.name);
