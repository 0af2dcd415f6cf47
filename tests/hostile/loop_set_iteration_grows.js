// expect: timeout
// timeoutMs: 300
const s = new Set([0]);
let i = 0;
for (const v of s) { s.delete(v); s.add(++i); }
