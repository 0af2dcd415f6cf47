// expect: ok
// result: "done"
// timeoutMs: 1500
Promise.reject(new Error('late'));
return 'done';
