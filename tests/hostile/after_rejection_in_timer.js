// expect: ok
// result: "done"
// timeoutMs: 500
setTimeout(() => { throw new Error('late'); }, 0);
return 'done';
