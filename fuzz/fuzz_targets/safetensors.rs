//! safetensors loader plus the shape validation `restore` does against a model's key spec
//! (the tiny preset's UNet), on arbitrary bytes.
#![no_main]
use dynface::models::unet::{config::UNetConfig, model::unet_spec};
use dynface::weights::safetensors_io::read_safetensors;
use libfuzzer_sys::fuzz_target;
use std::io::Cursor;
use std::path::Path;
use std::sync::OnceLock;

fn spec() -> &'static [(String, Vec<usize>)] {
    static SPEC: OnceLock<Vec<(String, Vec<usize>)>> = OnceLock::new();
    SPEC.get_or_init(|| {
        let cfg = UNetConfig::from_value(&dynface::restore::random::tiny_unet()).unwrap();
        unet_spec(&cfg).unwrap()
    })
}

fuzz_target!(|data: &[u8]| {
    let path = Path::new("fuzz.safetensors");
    if let Ok(mut store) = read_safetensors(Cursor::new(data), data.len() as u64, path) {
        if store.strip_module_prefix().is_ok() {
            let _ = store.validate(spec(), &[]);
        }
        for (name, t) in store.iter() {
            let _ = t.to_f32(name);
            let _ = t.non_finite();
        }
    }
});
