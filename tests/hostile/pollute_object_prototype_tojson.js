// expect: tool
Object.prototype.toJSON = function () { return 'hijacked'; };
const r = await tools.toy.add({ a: 1, b: 2 });
return r.sum;
