// expect: ok
// result: "undefined"
return typeof (function () { return this; })().process;
