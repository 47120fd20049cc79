//! `parse_filter` on arbitrary UTF-8; a parsed filter's canonical text must parse back to
//! an equal filter.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scimd_filter::{Limits, parse_filter, parse_filter_with};

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(filter) = parse_filter(input) {
        let text = filter.to_string();
        // The canonical text may be a little longer than the input (`1e5` -> `100000.0`);
        // depth and term counts never grow.
        let relaxed = Limits {
            max_len: usize::MAX,
            ..Limits::default()
        };
        let again = parse_filter_with(&text, relaxed);
        assert_eq!(again.as_ref(), Ok(&filter), "canonical text {text:?}");
    }
});
