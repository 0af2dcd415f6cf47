// expect: ok
// result: "undefined"
return typeof ShadowRealm;
