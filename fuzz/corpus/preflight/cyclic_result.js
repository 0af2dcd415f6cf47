// expect: output
const a = {};
a.self = a;
return a;
