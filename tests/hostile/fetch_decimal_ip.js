// expect: ok
// result: "TypeError"
// timeoutMs: 15000
const u = ['http://2130706433/'][0];
return await fetch(u).then(() => 'reached', (e) => e.name);
