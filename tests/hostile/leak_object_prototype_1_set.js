// expect: ok
// result: "set"
// Sets state; the next execution must not see it (fresh isolate each time).
Object.prototype.leak = 'secret';
return 'set';
