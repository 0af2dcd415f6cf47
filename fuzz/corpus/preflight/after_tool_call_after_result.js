// expect: ok
// result: "done"
// timeoutMs: 500
tools.toy.slow({ ms: 2000 });
return 'done';
