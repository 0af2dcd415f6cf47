// expect: ok
// result: false
// Code built at run time sees the same globals as the program.
return await (async () => {}).constructor('return ' + "Object.getOwnPropertyNames(globalThis).some(k => /host|std|os|require|process/.test(k))")();
