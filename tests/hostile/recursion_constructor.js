// expect: runtime
class A { constructor() { new A(); } }
new A();
