//! MTCNN's weights: facenet-pytorch 2.6.0 ships them inside its wheel as three legacy
//! torch pickles (`facenet_pytorch/data/{pnet,rnet,onet}.pt`, state dicts). They are read
//! with our own `.pth` reader (no pickle code runs) from the wheel itself, from a folder
//! holding the three files, or from the one safetensors file `dynface weights mtcnn`
//! writes (keys prefixed `pnet.` / `rnet.` / `onet.`).

use super::mtcnn_nets::weight_spec;
use crate::models::WeightMap;
use crate::weights::pth::{read_pth, PthOptions};
use crate::weights::{load_safetensors, save_safetensors, WeightStore};
use anyhow::{bail, Context, Result};
use std::io::{Cursor, Read};
use std::path::{Path, PathBuf};

/// The file name `dynface restore` looks for in its weights folder.
pub const MTCNN_FILE: &str = "mtcnn.safetensors";
/// The wheel the weights come from; `pip download --no-deps facenet-pytorch==2.6.0 -d DIR`.
pub const WHEEL_NAME: &str = "facenet_pytorch-2.6.0-py3-none-any.whl";
/// The three networks, in cascade order.
pub const NETS: [&str; 3] = ["pnet", "rnet", "onet"];
/// SHA-256 of facenet-pytorch 2.6.0's `data/{pnet,rnet,onet}.pt`: a file that differs is
/// refused before it is parsed.
pub const SHA256: [&str; 3] = [
    "a2a71925e0b9996a42f63e47efc1ca19043e69558b5c523b978d611dfae49c8f",
    "bbb937de72efc9ef83b186c49f5f558467a1d7e3453a8ece0d71a886633f6a86",
    "165bfbe42940416ccfb977545cf0e976d5bf321f67083ae2aaaa5c764280118d",
];

/// How to get the weights, for error messages.
pub fn how_to_get() -> String {
    format!(
        "get them with `pip download --no-deps facenet-pytorch==2.6.0 -d DIR` (a 1.9 MB wheel; do not install it) \
         and `dynface weights mtcnn DIR/{WHEEL_NAME} -o WEIGHTS/{MTCNN_FILE}`"
    )
}

fn read_pt(bytes: Vec<u8>, origin: &str, net: &str, into: &mut WeightStore) -> Result<()> {
    use sha2::{Digest, Sha256};
    let want = SHA256[NETS.iter().position(|n| *n == net).expect("a known net")];
    let got: String = Sha256::digest(&bytes)
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    if got != want {
        bail!("{origin}: SHA-256 {got}, expected {want} (facenet-pytorch 2.6.0's {net}.pt)");
    }
    let len = bytes.len() as u64;
    let load = read_pth(Cursor::new(bytes), len, origin, &PthOptions::default())
        .with_context(|| format!("{origin}: reading {net}'s state dict"))?;
    for (k, t) in load.store.iter() {
        into.insert(format!("{net}.{k}"), t.clone());
    }
    Ok(())
}

/// The three state dicts from the wheel (a zip) at `path`.
fn from_wheel(path: &Path) -> Result<WeightStore> {
    let f =
        std::fs::File::open(path).with_context(|| format!("{}: cannot open", path.display()))?;
    let mut zip = zip::ZipArchive::new(std::io::BufReader::new(f))
        .with_context(|| format!("{}: not a wheel (zip archive)", path.display()))?;
    let mut store = WeightStore::new();
    for net in NETS {
        let name = format!("facenet_pytorch/data/{net}.pt");
        let mut entry = zip.by_name(&name).with_context(|| {
            format!(
                "{}: no {name} inside; is this facenet-pytorch's wheel?",
                path.display()
            )
        })?;
        // The real files are 28 KB to 1.6 MB; anything huge is not them.
        if entry.size() > 64 << 20 {
            bail!(
                "{}: {name} claims {} bytes; refused",
                path.display(),
                entry.size()
            );
        }
        let mut bytes = Vec::with_capacity(entry.size() as usize);
        entry
            .read_to_end(&mut bytes)
            .with_context(|| format!("{}: cannot unpack {name}", path.display()))?;
        read_pt(
            bytes,
            &format!("{}:{name}", path.display()),
            net,
            &mut store,
        )?;
    }
    Ok(store)
}

fn from_folder(dir: &Path) -> Result<WeightStore> {
    let mut store = WeightStore::new();
    for net in NETS {
        let p = dir.join(format!("{net}.pt"));
        let bytes = std::fs::read(&p).with_context(|| format!("{}: cannot read", p.display()))?;
        read_pt(bytes, &p.display().to_string(), net, &mut store)?;
    }
    Ok(store)
}

/// The weights as a checked store from a wheel, a folder with `pnet.pt`, `rnet.pt`,
/// `onet.pt` (or [`MTCNN_FILE`]), or a safetensors file.
pub fn load_mtcnn_store(path: &Path) -> Result<WeightStore> {
    let store = if path.is_dir() {
        if path.join(MTCNN_FILE).exists() {
            load_safetensors(&path.join(MTCNN_FILE))?
        } else {
            from_folder(path)?
        }
    } else if path.extension().is_some_and(|e| e == "safetensors") {
        load_safetensors(path)?
    } else if path.exists() {
        from_wheel(path)?
    } else {
        bail!(
            "{}: no MTCNN weights there; {}",
            path.display(),
            how_to_get()
        );
    };
    store
        .validate(&weight_spec(), &[])
        .with_context(|| format!("{}: not MTCNN's weights", path.display()))?;
    Ok(store)
}

/// [`load_mtcnn_store`] as f32 tensors by key.
pub fn load_mtcnn(path: &Path) -> Result<WeightMap> {
    let store = load_mtcnn_store(path)?;
    let mut m = WeightMap::new();
    for (k, _) in store.iter() {
        m.insert(k.to_string(), store.tensor_f32(k)?);
    }
    Ok(m)
}

/// What `dynface weights mtcnn` converts (flags: `cli::weights::MtcnnWeightsArgs`).
#[derive(Clone, Debug)]
pub struct MtcnnWeightsOptions {
    /// facenet-pytorch 2.6.0's wheel, or a folder holding its pnet.pt, rnet.pt and onet.pt.
    pub source: PathBuf,
    /// Output safetensors file.
    pub output: PathBuf,
}

/// `dynface weights mtcnn SOURCE -o FILE`: the three networks in one safetensors file.
pub fn run_mtcnn_weights(args: &MtcnnWeightsOptions) -> Result<usize> {
    let store = load_mtcnn_store(&args.source)?;
    if let Some(d) = args.output.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(d).with_context(|| format!("cannot create {}", d.display()))?;
    }
    let meta = [("source".to_string(), args.source.display().to_string())]
        .into_iter()
        .collect();
    save_safetensors(&store, &args.output, Some(meta))?;
    eprintln!(
        "wrote {} ({} tensors, {} bytes of weights)",
        args.output.display(),
        store.len(),
        store.nbytes()
    );
    Ok(store.len())
}
