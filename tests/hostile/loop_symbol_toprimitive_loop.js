// expect: timeout
// timeoutMs: 300
const o = { [Symbol.toPrimitive]() { for (;;) {} } };
+o;
