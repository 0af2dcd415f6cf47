// expect: memory
// timeoutMs: 5000
let a = ['x'];
for (;;) a = [a.join(''), a.join('')];
