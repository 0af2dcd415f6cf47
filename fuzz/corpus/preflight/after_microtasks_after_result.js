// expect: ok|timeout
// timeoutMs: 500
Promise.resolve().then(() => { for (;;) {} });
return 'done';
