// expect: memory
const w = new WeakMap(), keep = [];
for (;;) { const k = {}; keep.push(k); w.set(k, new Array(100)); }
