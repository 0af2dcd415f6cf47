// expect: ok
// result: false
// Code built at run time sees the same globals as the program.
return Function('return ' + "Object.getOwnPropertyNames(globalThis).some(k => /host|std|os|require|process/.test(k))")();
