// expect: ok
// result: "done"
// timeoutMs: 500
Promise.reject(new Error('late'));
return 'done';
