// expect: ok
return "x".repeat(10_000_000);
