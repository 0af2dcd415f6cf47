// expect: ok
function f() { try { const c = arguments.callee.caller; return c ? typeof c.process : 'none'; } catch (e) { return e.name; } }
return f();
