// expect: ok
// result: "a"
// Must not see what the previous execution set.
return ' a '.trim();
