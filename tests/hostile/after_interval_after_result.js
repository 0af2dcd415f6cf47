// expect: ok
// result: "done"
// timeoutMs: 1500
setInterval(() => console.log('tick'), 1);
return 'done';
