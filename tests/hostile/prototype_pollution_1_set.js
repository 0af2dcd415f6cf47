// expect: ok
// result: 1
Object.prototype.polluted = "yes";
Array.prototype.map = () => "hijacked";
JSON.stringify = () => "hijacked";
return 1;
