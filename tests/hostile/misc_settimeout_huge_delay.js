// expect: ok
// result: "scheduled"
// timeoutMs: 1000
setTimeout(() => {}, 2 ** 40);
return 'scheduled';
