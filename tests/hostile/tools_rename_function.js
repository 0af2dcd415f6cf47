// expect: ok
// result: 2
const add = tools.toy.add;
Object.defineProperty(add, 'name', { value: 'fail' });
return (await add({ a: 1, b: 1 })).sum;
