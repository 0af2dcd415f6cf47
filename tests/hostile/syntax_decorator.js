// expect: syntax
@dec class A {}
return 1;
