//! `dynface weights download`: fetch the public checkpoints with resume and
//! SHA-256 verification, then convert them to safetensors.
//!
//! Flow per entry: a final file already present is only verified; otherwise bytes
//! stream into `FILE.part` (resumed with a Range request when one exists), the size
//! and hash are checked, and only then is `FILE.part` renamed to `FILE`.

use super::convert::convert_pth_to_safetensors;
use super::error::{Result, WeightsError};
use super::fsutil::sync_parent;
use super::manifest::{Manifest, ManifestEntry};
use indicatif::{ProgressBar, ProgressStyle};
use sha2::{Digest, Sha256};
use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::Duration;

#[derive(Clone, Debug)]
pub struct DownloadOptions {
    pub progress: bool,
    pub convert: bool,
    /// Timeout for connecting, for the response headers, and for each read (a
    /// stalled transfer fails; a slow but moving one does not).
    pub timeout: Duration,
    /// Honour HTTP(S)_PROXY / NO_PROXY from the environment.
    pub env_proxy: bool,
}

impl Default for DownloadOptions {
    fn default() -> Self {
        DownloadOptions {
            progress: true,
            convert: true,
            timeout: Duration::from_secs(60),
            env_proxy: true,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Fetched {
    /// The file was already there with the right hash.
    AlreadyPresent,
    /// Downloaded from scratch.
    Downloaded,
    /// Continued from `resumed_from` bytes of an earlier partial download.
    Resumed { resumed_from: u64 },
}

#[derive(Clone, Debug)]
pub struct DownloadOutcome {
    pub path: PathBuf,
    pub fetched: Fetched,
    pub converted: Option<PathBuf>,
}

pub fn part_path(path: &Path) -> PathBuf {
    let mut n = path
        .file_name()
        .map(|n| n.to_os_string())
        .unwrap_or_default();
    n.push(".part");
    path.with_file_name(n)
}

/// SHA-256 of a file as lower-case hex.
pub fn sha256_file(path: &Path) -> Result<String> {
    let mut f = File::open(path).map_err(|e| WeightsError::io(path, e))?;
    let mut h = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    loop {
        let n = f.read(&mut buf).map_err(|e| WeightsError::io(path, e))?;
        if n == 0 {
            break;
        }
        h.update(&buf[..n]);
    }
    Ok(hex(&h.finalize()))
}

fn hex(b: &[u8]) -> String {
    b.iter().map(|x| format!("{x:02x}")).collect()
}

fn manual_hint(e: &ManifestEntry, dest: &Path) -> String {
    format!(
        "download it by hand from {} and place it at {} ({} bytes, sha256 {})",
        e.url,
        dest.display(),
        e.size,
        e.sha256
    )
}

fn verify(e: &ManifestEntry, path: &Path) -> Result<()> {
    let len = std::fs::metadata(path)
        .map_err(|x| WeightsError::io(path, x))?
        .len();
    if len != e.size {
        return Err(WeightsError::Download(format!(
            "{}: {len} bytes, expected {}",
            path.display(),
            e.size
        )));
    }
    let got = sha256_file(path)?;
    if got != e.sha256 {
        return Err(WeightsError::Download(format!(
            "{}: sha256 {got} does not match the expected {}",
            path.display(),
            e.sha256
        )));
    }
    Ok(())
}

/// Fetches one entry into `dir` (and converts it when asked).
pub fn download_entry(
    e: &ManifestEntry,
    dir: &Path,
    opts: &DownloadOptions,
) -> Result<DownloadOutcome> {
    std::fs::create_dir_all(dir).map_err(|x| WeightsError::io(dir, x))?;
    let dest = dir.join(&e.file);
    let fetched = if dest.exists() {
        verify(e, &dest).map_err(|x| {
            WeightsError::Download(format!(
                "{x}; the existing file is left untouched: delete it to download again, or {}",
                manual_hint(e, &dest)
            ))
        })?;
        Fetched::AlreadyPresent
    } else {
        let part = part_path(&dest);
        let have = std::fs::metadata(&part).map(|m| m.len()).unwrap_or(0);
        // Room for the rest of the download, and for its safetensors copy when converting.
        let converting = e.convert_to.is_some() && opts.convert;
        let need = e.size.saturating_sub(have) + if converting { e.size } else { 0 };
        crate::disk_space::ensure_free(dir, need, &format!("downloading {}", e.file))
            .map_err(|x| WeightsError::Limit(format!("{x:#}")))?;
        let fetched = fetch_to_part(e, &part, opts)
            .map_err(|x| WeightsError::Download(format!("{x}\n{}", manual_hint(e, &dest))))?;
        if let Err(x) = verify(e, &part) {
            // A complete file with the wrong hash cannot be resumed: start over next time.
            let _ = std::fs::remove_file(&part);
            return Err(WeightsError::Download(format!(
                "{x} (downloaded from {}); the partial file was deleted. {}",
                e.url,
                manual_hint(e, &dest)
            )));
        }
        std::fs::rename(&part, &dest).map_err(|x| WeightsError::io(&dest, x))?;
        sync_parent(&dest);
        fetched
    };
    let converted = match (&e.convert_to, opts.convert) {
        (Some(out), true) => {
            let out = dir.join(out);
            if !out.exists() {
                convert_pth_to_safetensors(&dest, &out, e.key.as_deref(), None)?;
            }
            Some(out)
        }
        _ => None,
    };
    Ok(DownloadOutcome {
        path: dest,
        fetched,
        converted,
    })
}

/// Streams `e.url` into `part`, resuming from its current length when the server
/// honours Range. A short transfer keeps the partial file for the next try.
fn fetch_to_part(e: &ManifestEntry, part: &Path, opts: &DownloadOptions) -> Result<Fetched> {
    let have = std::fs::metadata(part).map(|m| m.len()).unwrap_or(0);
    if have > e.size {
        // Longer than the real file: cannot be a prefix of it.
        std::fs::remove_file(part).map_err(|x| WeightsError::io(part, x))?;
        return fetch_to_part(e, part, opts);
    }
    if have == e.size {
        return Ok(Fetched::Resumed { resumed_from: have });
    }
    let mut config = ureq::Agent::config_builder();
    if !opts.env_proxy {
        config = config.proxy(None);
    }
    let agent: ureq::Agent = config
        .timeout_connect(Some(opts.timeout))
        .timeout_per_read(Some(opts.timeout))
        .timeout_recv_response(Some(opts.timeout))
        .http_status_as_error(false)
        .build()
        .into();
    let mut req = agent.get(&e.url);
    if have > 0 {
        req = req.header("Range", format!("bytes={have}-"));
    }
    let resp = req
        .call()
        .map_err(|x| WeightsError::Download(format!("cannot fetch {}: {x}", e.url)))?;
    let status = resp.status().as_u16();
    let (start, fetched) = match status {
        206 if have > 0 => {
            check_content_range(&resp, have, e)?;
            (have, Fetched::Resumed { resumed_from: have })
        }
        200 => (0, Fetched::Downloaded),
        _ => {
            return Err(WeightsError::Download(format!(
                "cannot fetch {}: HTTP status {status}",
                e.url
            )))
        }
    };
    let mut file = if start == 0 {
        File::create(part)
    } else {
        OpenOptions::new().append(true).open(part)
    }
    .map_err(|x| WeightsError::io(part, x))?;
    let bar = if opts.progress {
        let b = ProgressBar::new(e.size);
        if let Ok(style) = ProgressStyle::with_template(
            "{msg} [{bar:40}] {bytes}/{total_bytes} {bytes_per_sec} eta {eta}",
        ) {
            b.set_style(style.progress_chars("=> "));
        }
        b.set_message(e.file.clone());
        b.set_position(start);
        b
    } else {
        ProgressBar::hidden()
    };
    let mut body = resp.into_body().into_reader();
    let mut buf = vec![0u8; 1 << 16];
    let mut pos = start;
    let outcome: Result<()> = loop {
        let n = match body.read(&mut buf) {
            Ok(0) => break Ok(()),
            Ok(n) => n,
            Err(x) => {
                break Err(WeightsError::Download(format!(
                    "transfer from {} failed after {pos} of {} bytes: {x}",
                    e.url, e.size
                )))
            }
        };
        if pos + n as u64 > e.size {
            break Err(WeightsError::Download(format!(
                "{} sent more than the expected {} bytes",
                e.url, e.size
            )));
        }
        if let Err(x) = file.write_all(&buf[..n]) {
            break Err(WeightsError::io(part, x));
        }
        pos += n as u64;
        bar.set_position(pos);
    };
    bar.finish_and_clear();
    file.sync_all().map_err(|x| WeightsError::io(part, x))?;
    outcome.map_err(|x| {
        WeightsError::Download(format!(
            "{x}; partial data kept in {} for resume",
            part.display()
        ))
    })?;
    if pos != e.size {
        return Err(WeightsError::Download(format!(
            "transfer from {} ended after {pos} of {} bytes; partial data kept in {} for resume",
            e.url,
            e.size,
            part.display()
        )));
    }
    Ok(fetched)
}

/// A 206 must start where our partial file ends, or appending would corrupt it.
fn check_content_range(
    resp: &ureq::http::Response<ureq::Body>,
    have: u64,
    e: &ManifestEntry,
) -> Result<()> {
    let cr = resp
        .headers()
        .get("content-range")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let first = cr
        .strip_prefix("bytes ")
        .and_then(|r| r.split('-').next())
        .and_then(|s| s.trim().parse::<u64>().ok());
    if first != Some(have) {
        return Err(WeightsError::Download(format!(
            "{} answered the resume request at byte {have} with Content-Range `{cr}`",
            e.url
        )));
    }
    Ok(())
}

/// Selects entries by name or file name; all when `names` is empty.
pub fn select<'m>(m: &'m Manifest, names: &[String]) -> Result<Vec<&'m ManifestEntry>> {
    if names.is_empty() {
        return Ok(m.entries.iter().collect());
    }
    names
        .iter()
        .map(|n| {
            m.entries
                .iter()
                .find(|e| &e.name == n || &e.file == n)
                .ok_or_else(|| {
                    let known: Vec<&str> = m.entries.iter().map(|e| e.name.as_str()).collect();
                    WeightsError::Download(format!(
                        "no manifest entry `{n}`; known: {}",
                        known.join(", ")
                    ))
                })
        })
        .collect()
}
