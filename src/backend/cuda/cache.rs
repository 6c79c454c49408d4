//! On-disk cache of compiled kernel files, keyed by a hash of everything that determines the
//! CUBIN (source, options, architecture, NVRTC version), so a cold start compiles each file
//! once per machine. Entries are written to a temporary name and renamed into place, so a
//! concurrent reader never sees a partial file.

use super::kernels::{full_source, KernelFile};
use super::nvrtc::{self, CompileOpts};
use std::path::{Path, PathBuf};

/// `$DYNFACE_KERNEL_CACHE`, else `$XDG_CACHE_HOME/dynface/kernels`, else
/// `~/.cache/dynface/kernels`; None when none of these can be formed.
pub fn cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os("DYNFACE_KERNEL_CACHE").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(d));
    }
    if let Some(d) = std::env::var_os("XDG_CACHE_HOME").filter(|v| !v.is_empty()) {
        return Some(PathBuf::from(d).join("dynface").join("kernels"));
    }
    std::env::var_os("HOME").filter(|v| !v.is_empty()).map(|h| {
        PathBuf::from(h)
            .join(".cache")
            .join("dynface")
            .join("kernels")
    })
}

/// 128-bit FNV-1a (two 64-bit lanes with different offsets): stable across Rust versions,
/// unlike `DefaultHasher`.
pub fn key(parts: &[&[u8]]) -> String {
    let mut a: u64 = 0xcbf29ce484222325;
    let mut b: u64 = 0x6c62272e07bb0142;
    for p in parts {
        for &byte in p.iter().chain(&[0xffu8]) {
            a = (a ^ byte as u64).wrapping_mul(0x100000001b3);
            b = (b ^ byte as u64).wrapping_mul(0x100000001b3).rotate_left(5);
        }
    }
    format!("{a:016x}{b:016x}")
}

fn entry(dir: &Path, file: &str, key: &str) -> PathBuf {
    dir.join(format!("{file}-{key}.cubin"))
}

fn store(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent)?;
    }
    // One temporary per writer, threads included: the workers of a device list compile the
    // same kernels at once, and a shared temporary could be renamed while another truncates it.
    static WRITES: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let n = WRITES.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let tmp = path.with_extension(format!("tmp{}-{n}", std::process::id()));
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

/// The CUBIN of `file` for `opts`, from the cache or freshly compiled (then cached).
/// Returns whether it was a cache hit. Cache write failures are not errors (the CUBIN is
/// still returned); they are reported through the returned note.
pub fn compile_cached(
    file: &KernelFile,
    opts: &CompileOpts,
) -> Result<(Vec<u8>, bool, Option<String>), String> {
    let src = full_source(file);
    let ver = nvrtc::version()?;
    let k = key(&[
        src.as_bytes(),
        opts.to_args().join(" ").as_bytes(),
        opts.arch.as_bytes(),
        format!("nvrtc {}.{}", ver.0, ver.1).as_bytes(),
    ]);
    let dir = cache_dir();
    if let Some(d) = &dir {
        if let Ok(bytes) = std::fs::read(entry(d, file.name, &k)) {
            if !bytes.is_empty() {
                return Ok((bytes, true, None));
            }
        }
    }
    let c = nvrtc::compile(file.name, &src, opts)?;
    let note = match &dir {
        Some(d) => store(&entry(d, file.name, &k), &c.cubin)
            .err()
            .map(|e| format!("kernel cache {}: {e}", d.display())),
        None => Some("no kernel cache directory (set DYNFACE_KERNEL_CACHE or HOME)".into()),
    };
    Ok((c.cubin, false, note))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn key_depends_on_every_part() {
        let k = key(&[b"src", b"opts"]);
        assert_eq!(k.len(), 32);
        assert_eq!(k, key(&[b"src", b"opts"]));
        assert_ne!(k, key(&[b"src", b"opt"]));
        assert_ne!(k, key(&[b"sr", b"copts"]), "part boundaries must matter");
    }

    #[test]
    fn store_is_atomic_rename() {
        let dir = std::env::temp_dir().join(format!("dynface-kcache-{}", std::process::id()));
        let p = entry(&dir, "conv", "abc");
        store(&p, b"cubin").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"cubin");
        let leftovers: Vec<_> = std::fs::read_dir(&dir)
            .unwrap()
            .filter_map(|e| e.ok())
            .filter(|e| e.path().extension().is_some_and(|x| x != "cubin"))
            .collect();
        assert!(leftovers.is_empty());
        std::fs::remove_dir_all(&dir).ok();
    }
}
