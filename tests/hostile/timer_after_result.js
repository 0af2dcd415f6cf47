// expect: ok
// result: "done"
setTimeout(() => { for (;;) {} }, 10);
return "done";
