// expect: ok
// result: 120
// timeoutMs: 15000
let n = 0;
for (let i = 0; i < 120; i++) { await fetch('${WEB}/json').catch(() => {}); n++; }
return n;
