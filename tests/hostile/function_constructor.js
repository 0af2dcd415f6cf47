// expect: ok
// result: ["undefined","undefined","undefined","undefined"]
return Function("return [typeof process, typeof require, typeof std, typeof os]")();
