// expect: ok
// result: false
let o = tools.toy, seen = [];
while (o) { seen.push(...Object.getOwnPropertyNames(o)); o = Object.getPrototypeOf(o); }
return seen.includes('fail');
