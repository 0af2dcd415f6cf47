// expect: ok
// result: "done"
Promise.prototype.then = function () { return this; };
return "done";
