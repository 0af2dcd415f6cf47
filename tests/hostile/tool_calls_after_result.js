// expect: ok
// result: "returned before the call ended"
tools.toy.slow({ ms: 5000 });
return "returned before the call ended";
