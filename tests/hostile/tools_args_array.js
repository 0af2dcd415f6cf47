// expect: tool
return await tools.toy.add([1, 2]);
