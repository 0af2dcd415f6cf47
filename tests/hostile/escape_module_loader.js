// expect: ok
// result: ["undefined","undefined","undefined"]
return [typeof loadScript, typeof setReadHandler, typeof evalScript];
