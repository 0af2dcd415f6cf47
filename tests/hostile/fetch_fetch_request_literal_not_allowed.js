// expect: policy
// timeoutMs: 15000
return await fetch(new Request('https://evil.example/x'));
