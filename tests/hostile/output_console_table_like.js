// expect: ok
// result: "done"
// timeoutMs: 60000
for (let i = 0; i < 10000; i++) console.log({ i, a: new Array(100).fill(i) });
return 'done';
