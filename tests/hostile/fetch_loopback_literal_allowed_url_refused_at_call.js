// expect: runtime
// timeoutMs: 15000
return await fetch('${NAMED}/json');
