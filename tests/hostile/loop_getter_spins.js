// expect: timeout
// timeoutMs: 300
const o = { get x() { for (;;) {} } };
o.x;
