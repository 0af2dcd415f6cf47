// expect: ok
// result: "set"
// Sets state; the next execution must not see it (fresh isolate each time).
Symbol.for('codemode.secret');
globalThis[Symbol.for('codemode.secret')] = 'secret';
return 'set';
