// expect: output
const a = [];
a.push(a);
return Promise.resolve(a);
