// expect: ok
// result: true
const refs = [];
for (let i = 0; i < 10000; i++) refs.push(new WeakRef({ i }));
return refs.filter((r) => r.deref() !== undefined).length >= 0;
