// expect: ok
return '\ud800';
