// expect: runtime
return eval('['.repeat(100000) + ']'.repeat(100000));
