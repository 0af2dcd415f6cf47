// expect: output
return () => 1;
