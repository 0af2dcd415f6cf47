// expect: ok
// result: 3
const args = new Proxy({ a: 1, b: 2 }, { ownKeys(t) { return Reflect.ownKeys(t); } });
return (await tools.toy.add(args)).sum;
