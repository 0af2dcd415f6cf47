// expect: output
return 1n;
