// expect: timeout
// timeoutMs: 300
await new Promise(() => { const f = () => queueMicrotask(f); f(); });
