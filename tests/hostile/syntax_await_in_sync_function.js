// expect: syntax
function f() { await 1; }
return f();
