#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| mcu::fuzzing::sdp_offer(data));
