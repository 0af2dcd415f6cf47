// expect: timeout
// timeoutMs: 300
do {} while (true);
