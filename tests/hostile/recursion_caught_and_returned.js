// expect: ok
// result: "caught"
function f() { return f(); }
try { f(); } catch (e) { return e instanceof RangeError ? 'caught' : e.name; }
