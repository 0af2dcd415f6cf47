// expect: runtime
return await import('data:text/javascript,export default 1');
