// expect: memory
return new TextEncoder().encode('x'.repeat(2 ** 27)).length;
