//! `.pth` reader (zip and legacy formats) on arbitrary bytes: must return Ok or an error,
//! never panic, hang or allocate beyond the limits.
#![no_main]
use dynface::weights::pth::{read_pth, PthOptions};
use libfuzzer_sys::fuzz_target;
use std::io::Cursor;

fuzz_target!(|data: &[u8]| {
    let opts = PthOptions {
        max_tensor_bytes: 64 << 20,
        ..PthOptions::default()
    };
    if let Ok(load) = read_pth(Cursor::new(data), data.len() as u64, "fuzz.pth", &opts) {
        // Whatever loaded must convert like a real checkpoint does.
        for (name, t) in load.store.iter() {
            let _ = t.to_f32(name);
        }
    }
});
