// expect: syntax
return (;
