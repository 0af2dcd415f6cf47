// expect: policy
// timeoutMs: 3000
return await fetch(new Request('https://evil.example/x'));
