// expect: ok
// result: "set"
// Sets state; the next execution must not see it (fresh isolate each time).
Array.prototype.leak = 1;
return 'set';
