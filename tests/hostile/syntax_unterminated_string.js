// expect: syntax
return 'abc;
