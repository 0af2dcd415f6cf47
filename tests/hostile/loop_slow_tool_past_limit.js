// expect: timeout
// timeoutMs: 300
await tools.toy.slow({ ms: 5000 });
