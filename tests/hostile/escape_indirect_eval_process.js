// expect: ok
// result: "undefined"
// Code built at run time sees the same globals as the program.
return (0, eval)("typeof process");
