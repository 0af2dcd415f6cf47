// expect: ok
// result: "set"
// Sets state; the next execution must not see it (fresh isolate each time).
Math.random = () => 4;
return 'set';
