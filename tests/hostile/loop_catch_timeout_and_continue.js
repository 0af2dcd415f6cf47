// expect: timeout
// timeoutMs: 300
for (;;) { try { for (;;) {} } catch (e) {} }
