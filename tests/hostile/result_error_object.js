// expect: ok
// result: {"name":"Error","message":"x"}
return new Error('x');
