// expect: ok
// result: "clean"
// Must not see what the previous execution set.
console.log('fine');
return 'clean';
