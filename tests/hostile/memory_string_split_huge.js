// expect: memory
return 'x'.repeat(2 ** 25).split('').length;
