// expect: ok
// result: false
return JSON.stringify(tools).includes('fail');
