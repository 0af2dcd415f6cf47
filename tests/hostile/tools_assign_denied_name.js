// expect: policy
try { tools.toy.fail = () => 'mine'; } catch (e) {}
return 'x';
