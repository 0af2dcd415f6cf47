// expect: tool
return await tools.toy.add('a=1');
