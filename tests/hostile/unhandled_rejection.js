// expect: ok
// result: "still fine"
Promise.reject(new Error("nobody listens"));
return "still fine";
