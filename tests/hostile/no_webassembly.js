// expect: ok
// result: "undefined"
return typeof WebAssembly;
