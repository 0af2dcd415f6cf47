// expect: ok
// result: "fine"
// timeoutMs: 1000
clearTimeout(123456);
clearInterval('x');
return 'fine';
