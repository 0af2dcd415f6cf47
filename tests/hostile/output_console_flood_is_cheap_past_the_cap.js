// expect: ok
// result: "done"
// Past the log cap lines are only counted, never formatted: two million calls with an
// object to format end well inside the clock.
const big = { a: [1, 2, 3], b: "x".repeat(100) };
for (let i = 0; i < 2000000; i++) console.log(big);
return "done";
