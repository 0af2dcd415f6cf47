// expect: timeout
// timeoutMs: 300
return { then() {} };
