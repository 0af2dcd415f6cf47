// expect: ok
// result: "clean"
// Must not see what the previous execution set.
return globalThis[Symbol.for('codemode.secret')] ?? 'clean';
