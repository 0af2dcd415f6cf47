// expect: timeout
// timeoutMs: 300
const p = new Proxy({}, { get() { for (;;) {} } });
p.x;
