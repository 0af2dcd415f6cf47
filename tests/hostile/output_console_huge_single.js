// expect: ok|memory
// timeoutMs: 3000
console.log('x'.repeat(50 << 20));
return 'done';
