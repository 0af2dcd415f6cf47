// expect: ok
// result: "absent"
return Object.getOwnPropertyDescriptor(tools.toy, 'fail') ?? 'absent';
