// expect: timeout
// Joining empty strings allocates next to nothing: only the clock can stop it. Endless, so
// that no machine is fast enough to finish first; each join alone (2^32 - 1 holes) also
// outlasts the limit, so the clock stops it inside the native call.
for (;;) new Array(2 ** 32 - 1).join("");
