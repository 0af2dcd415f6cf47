// expect: ok
// result: "done"
// timeoutMs: 3000
for (let i = 0; i < 100; i++) console.error('x'.repeat(100000));
return 'done';
