// expect: ok
// result: "ReferenceError"
// The glue's source is no secret; rebuilt from it, a binding has no host to call.
const rebuilt = Function('return ' + String(tools.toy.add))();
try { await rebuilt({ a: 1, b: 2 }); return 'called the host'; } catch (e) { return e.name; }
