// expect: ok
// result: "TypeError"
try { return typeof tools.toy.add.caller; } catch (e) { return e.name; }
