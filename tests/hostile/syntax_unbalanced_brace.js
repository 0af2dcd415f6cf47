// expect: syntax
if (true) {
return 1;
