// expect: ok
// result: ["undefined","undefined"]
return [typeof Worker, typeof SharedWorker];
