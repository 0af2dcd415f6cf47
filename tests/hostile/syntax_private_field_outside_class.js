// expect: syntax
return this.#x;
