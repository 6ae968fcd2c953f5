#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| hookline_fuzz::targets::secret_parse(data));
