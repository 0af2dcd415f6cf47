// expect: output
return Symbol('x');
