// expect: ok
// result: "done"
// timeoutMs: 1500
setTimeout(() => { throw new Error('late'); }, 0);
return 'done';
