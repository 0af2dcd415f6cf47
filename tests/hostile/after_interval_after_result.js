// expect: ok
// result: "done"
// timeoutMs: 500
setInterval(() => console.log('tick'), 1);
return 'done';
