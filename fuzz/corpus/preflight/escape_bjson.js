// expect: ok
// result: "undefined"
return typeof bjson;
