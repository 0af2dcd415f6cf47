// expect: ok|runtime|crashed
// quickjs-ng#1318: a FinalizationRegistry whose held value outlived the registry.
class Tracker {
  #registry = new FinalizationRegistry(() => {});
  set(key) { this.#registry.register(key, {}, new WeakRef(key)); }
}
function Observer() { this.targets = new Tracker(); }
Observer.prototype.observe = function (target) {
  this.targets.set(target);
  target.subset = new Set();
  target.subset.add(this);
};
const sample = {};
new Observer().observe(sample);
return "observed";
