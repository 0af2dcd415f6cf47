// expect: tool
const a = {};
a.a = a;
return await tools.toy.add(a);
