// expect: ok
// result: "TypeError"
'use strict';
try { tools.toy.add = () => 'mine'; return 'assigned'; } catch (e) { return e.name; }
