// expect: ok
// result: "undefined"
const probe = { };
return Function('with (this) { return typeof process; }').call(probe);
