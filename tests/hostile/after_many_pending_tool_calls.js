// expect: ok
// result: "done"
// timeoutMs: 1500
for (let i = 0; i < 200; i++) tools.toy.slow({ ms: 3000 });
return 'done';
