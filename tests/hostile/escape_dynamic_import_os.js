// expect: runtime
const m = await import('os');
return typeof m;
