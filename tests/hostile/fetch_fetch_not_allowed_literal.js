// expect: policy
// timeoutMs: 3000
return await fetch('https://evil.example/x');
