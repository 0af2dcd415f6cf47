// expect: ok
// timeoutMs: 1000
try { atob('***'); return 'decoded'; } catch (e) { return e.name; }
