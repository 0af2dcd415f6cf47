// expect: timeout
// timeoutMs: 300
const t = () => { for (;;) {} };
t`x`;
