// expect: runtime
const a = (n) => b(n + 1), b = (n) => a(n + 1);
return a(0);
