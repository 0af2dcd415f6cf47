// expect: timeout|memory
// timeoutMs: 300
await new Promise(() => { const f = () => Promise.resolve().then(f); f(); });
