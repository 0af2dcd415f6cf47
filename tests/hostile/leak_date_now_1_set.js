// expect: ok
// result: "set"
// Sets state; the next execution must not see it (fresh isolate each time).
Date.now = () => 0;
return 'set';
