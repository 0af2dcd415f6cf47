// expect: memory|timeout
const spin = () => Promise.resolve().then(spin);
spin();
await new Promise(() => {});
