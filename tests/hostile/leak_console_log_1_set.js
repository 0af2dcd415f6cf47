// expect: ok
// result: "set"
// Sets state; the next execution must not see it (fresh isolate each time).
console.log = () => { throw new Error('hijacked'); };
return 'set';
