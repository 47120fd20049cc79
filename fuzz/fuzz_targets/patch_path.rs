//! `parse_patch_path` on arbitrary UTF-8; a parsed path's canonical text must parse back
//! to an equal path.
#![no_main]

use libfuzzer_sys::fuzz_target;
use scimd_filter::{Limits, parse_patch_path, parse_patch_path_with};

fuzz_target!(|data: &[u8]| {
    let Ok(input) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(path) = parse_patch_path(input) {
        let text = path.to_string();
        let relaxed = Limits {
            max_len: usize::MAX,
            ..Limits::default()
        };
        let again = parse_patch_path_with(&text, relaxed);
        assert_eq!(again.as_ref(), Ok(&path), "canonical text {text:?}");
    }
});
