// expect: runtime
const m = await import('std');
return typeof m;
