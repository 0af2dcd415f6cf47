// expect: memory
// timeoutMs: 30000
let a = ['x'];
for (;;) a = [a.join(''), a.join('')];
