// expect: ok
// result: "undefined"
// Code built at run time sees the same globals as the program.
return await (async () => {}).constructor('return ' + "typeof process")();
