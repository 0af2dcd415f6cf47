// expect: runtime
function dive(n) { return dive(n + 1) + 1; }
return dive(0);
