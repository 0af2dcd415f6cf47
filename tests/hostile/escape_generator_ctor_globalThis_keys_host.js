// expect: ok
// result: false
// Code built at run time sees the same globals as the program.
return (function* () {}).constructor('yield ' + "Object.getOwnPropertyNames(globalThis).some(k => /^(host|std|os|require|process|scriptArgs|print|bjson)$/.test(k))")().next().value;
