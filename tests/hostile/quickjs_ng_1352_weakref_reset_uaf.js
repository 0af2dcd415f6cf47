// expect: ok|runtime|crashed
// quickjs-ng#1352: reset_weak_ref freed a FinalizationRegistry that only a WeakMap value
// kept alive, then used it.
let key = Symbol("uaf-key");
let map = new WeakMap();
let registry = new FinalizationRegistry(() => {});
registry.register(key, 1);
map.set(key, registry);
registry = null;
key = null;
return "released";
