// expect: memory|runtime
return new Float64Array(2 ** 28).length;
