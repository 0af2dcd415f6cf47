// expect: tool
const add = tools.toy.add;
return await add.call({ name: 'fail' }, { reason: 'x' });
