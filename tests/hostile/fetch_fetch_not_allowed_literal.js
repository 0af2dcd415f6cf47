// expect: policy
// timeoutMs: 15000
return await fetch('https://evil.example/x');
