// expect: ok
// result: "done"
// timeoutMs: 1500
tools.toy.slow({ ms: 2000 });
return 'done';
