// expect: ok
// result: "undefined"
// Must not see what the previous execution set.
return typeof leak;
