// expect: ok
// timeoutMs: 1000
return typeof Intl;
