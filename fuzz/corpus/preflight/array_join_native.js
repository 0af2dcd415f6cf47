// expect: timeout
return new Array(1e8).join("x").length;
