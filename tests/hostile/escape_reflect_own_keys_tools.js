// expect: ok
// result: 0
return Reflect.ownKeys(tools).filter(k => typeof k !== 'string').length;
