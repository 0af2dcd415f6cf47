#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| codemode_mcp::fuzzing::preflight(data));
