// expect: ok
// result: ["undefined","undefined","undefined"]
return [typeof XMLHttpRequest, typeof WebSocket, typeof EventSource];
