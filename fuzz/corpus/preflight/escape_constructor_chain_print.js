// expect: ok
// result: "undefined"
// Code built at run time sees the same globals as the program.
return (() => {}).constructor('return ' + "typeof print")();
