// expect: timeout
// timeoutMs: 300
for (;;) { try { throw 1; } catch {} finally { continue; } }
