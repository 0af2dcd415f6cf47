// expect: timeout
// timeoutMs: 300
function f(a = (() => { for (;;) {} })()) {}
f();
