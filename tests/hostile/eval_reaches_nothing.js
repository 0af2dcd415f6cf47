// expect: ok
// result: ["undefined","undefined","undefined"]
return [eval("typeof process"), eval("typeof require"), eval("typeof Deno")];
