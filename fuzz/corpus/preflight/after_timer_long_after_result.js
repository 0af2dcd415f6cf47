// expect: ok
// result: "done"
// timeoutMs: 500
setTimeout(() => { for (;;) {} }, 10);
return 'done';
