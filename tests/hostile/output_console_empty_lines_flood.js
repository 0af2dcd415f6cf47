// expect: ok
// result: "done"
// Empty lines count against the log cap like any other: a flood of them is cut at the
// cap (in lines as well as bytes), not carried whole into the answer.
for (let i = 0; i < 300000; i++) console.log("");
return "done";
