// expect: timeout
// timeoutMs: 300
const o = { toString() { for (;;) {} } };
String(o);
