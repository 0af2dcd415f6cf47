// expect: runtime
const a = [];
a.push(a);
return String(a);
