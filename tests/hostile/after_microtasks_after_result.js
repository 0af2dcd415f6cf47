// expect: ok|timeout
// timeoutMs: 1500
Promise.resolve().then(() => { for (;;) {} });
return 'done';
