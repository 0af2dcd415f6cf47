// expect: ok|tool|memory
return await tools.toy.add({ a: 1, b: 1, pad: 'x'.repeat(20 << 20) });
