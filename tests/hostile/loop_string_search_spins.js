// expect: timeout
// timeoutMs: 300
let s = 'a';
for (;;) s.indexOf('b');
