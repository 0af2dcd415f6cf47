// expect: memory
return 'x'.padEnd(2 ** 29).length;
