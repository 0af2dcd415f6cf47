// expect: timeout
// timeoutMs: 300
function* g() { for (;;) yield 1; }
for (const x of g()) {}
