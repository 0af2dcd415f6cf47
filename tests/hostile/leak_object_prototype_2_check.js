// expect: ok
// result: "clean"
// Must not see what the previous execution set.
return ({}).leak ?? 'clean';
