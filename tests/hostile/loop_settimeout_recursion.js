// expect: timeout
// timeoutMs: 300
await new Promise(() => { const f = () => setTimeout(f, 0); f(); });
