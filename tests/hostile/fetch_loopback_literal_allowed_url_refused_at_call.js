// expect: runtime
// timeoutMs: 3000
return await fetch('${NAMED}/json');
