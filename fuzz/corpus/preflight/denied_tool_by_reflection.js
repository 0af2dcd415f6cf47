// expect: ok
// result: false
return Object.keys(tools.toy).includes("fail");
