// expect: ok
return 'x'.repeat(8 << 20);
