// expect: ok
// result: 200
// timeoutMs: 15000
JSON.stringify = () => '{"url":"http://169.254.169.254/"}';
return await fetch('${WEB}/json').then((r) => r.status, (e) => e.message);
