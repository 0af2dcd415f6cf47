// expect: ok
// result: "done"
// timeoutMs: 1500
setTimeout(() => { for (;;) {} }, 10);
return 'done';
