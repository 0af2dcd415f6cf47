// expect: tool
const n = ['fa', 'il'].join('');
return await tools.toy[n]({ reason: 'x' });
