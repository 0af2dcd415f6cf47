// expect: ok
// result: "done"
// timeoutMs: 60000
for (let i = 0; i < 200000; i++) console.log('line ' + i);
return 'done';
