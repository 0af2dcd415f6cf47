// expect: ok
// result: "TypeError"
try { return typeof tools.toy.add.arguments; } catch (e) { return e.name; }
