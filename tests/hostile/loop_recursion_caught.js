// expect: timeout
// timeoutMs: 300
function f() { try { f(); } catch (e) { f(); } }
f();
