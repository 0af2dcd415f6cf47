// expect: ok
// result: "TypeError"
// timeoutMs: 3000
const u = ['http://[::1]/'][0];
return await fetch(u).then(() => 'reached', (e) => e.name);
