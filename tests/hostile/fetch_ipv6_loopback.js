// expect: ok
// result: "TypeError"
// timeoutMs: 15000
const u = ['http://[::1]/'][0];
return await fetch(u).then(() => 'reached', (e) => e.name);
