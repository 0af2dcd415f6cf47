// expect: ok
// result: "set"
// Sets state; the next execution must not see it (fresh isolate each time).
String.prototype.trim = () => 'hijacked';
return 'set';
