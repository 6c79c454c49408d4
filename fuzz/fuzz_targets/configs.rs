//! The JSON configs a user can hand us: a UNet config, a DSST table, and a model set
//! (`models.json`, which carries the sampler settings). The first byte picks which.
#![no_main]
use dynface::diffusion::Schedule;
use dynface::dsst::DsstTable;
use dynface::models::unet::{config::UNetConfig, model::unet_spec};
use dynface::restore::ModelSet;
use libfuzzer_sys::fuzz_target;

fn unet(cfg: &UNetConfig) {
    if cfg.validate().is_ok() {
        let _ = unet_spec(cfg);
    }
}

fuzz_target!(|data: &[u8]| {
    let Some((&which, rest)) = data.split_first() else {
        return;
    };
    let Ok(text) = std::str::from_utf8(rest) else {
        return;
    };
    match which % 3 {
        0 => {
            if let Ok(cfg) = UNetConfig::from_json_str(text) {
                unet(&cfg);
            }
        }
        1 => {
            if let Ok(t) = DsstTable::from_json_str(text) {
                for s in [-1.0, 0.0, 0.5, 3.0, 1e9, f64::NAN, f64::INFINITY] {
                    let k = t.lookup(s);
                    assert!(t.t.contains(&k), "lookup({s}) = {k} is not a table step");
                }
            }
        }
        _ => {
            if let Ok(set) = ModelSet::from_json_str(text) {
                if let Ok(cfg) = set.unet_config() {
                    unet(&cfg);
                }
                let _ = set.restorer.config.validate();
                if set.sampler.validate().is_ok() {
                    let _ = Schedule::for_spec(&set.sampler.schedule, &set.sampler.sampler);
                }
            }
        }
    }
});
