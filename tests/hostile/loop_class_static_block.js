// expect: timeout
// timeoutMs: 300
class A { static { for (;;) {} } }
