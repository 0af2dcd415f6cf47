// expect: ok
// result: false
return 'fail' in tools.toy;
