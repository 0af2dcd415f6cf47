// expect: syntax
enum E { A }
return E.A;
