// expect: timeout
return { get x() { for (;;) {} } };
