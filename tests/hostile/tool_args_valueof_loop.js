// expect: tool
return await tools.toy.add({ a: { valueOf() { for (;;) {} } }, b: 1 });
