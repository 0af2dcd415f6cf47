// expect: memory
const s = '[' + '1,'.repeat(2 ** 24) + '1]';
return JSON.parse(s).length;
