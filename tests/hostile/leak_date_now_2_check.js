// expect: ok
// result: true
// Must not see what the previous execution set.
return Date.now() > 0;
