// expect: ok
// result: "1970-01-01T00:00:00.000Z"
return new Date(0);
