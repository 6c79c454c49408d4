//! A tiny HTTP/1.1 file server on 127.0.0.1 for download tests. It serves one body,
//! honours `Range: bytes=N-` unless told not to, can cut a transfer short, and stops
//! by itself after a request budget or a deadline, whichever comes first.

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

#[derive(Clone, Copy, Debug)]
pub enum Mode {
    /// 206 for range requests.
    Normal,
    /// Always 200 with the whole body.
    IgnoreRange,
    /// Promise the full length, send only this many body bytes, then close.
    TruncateAfter(usize),
    /// Send this many body bytes, then go silent for 3 s before closing.
    StallAfter(usize),
}

pub struct Server {
    pub base: String,
    /// The `Range` header of every request seen (`None` when absent), in order.
    pub ranges: Arc<Mutex<Vec<Option<String>>>>,
    handle: Option<JoinHandle<()>>,
}

impl Server {
    /// URL of the served file; `/redirect/NAME` answers 302 to `/NAME`.
    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub fn join(mut self) -> Vec<Option<String>> {
        if let Some(h) = self.handle.take() {
            h.join().expect("server thread");
        }
        self.ranges.lock().unwrap().clone()
    }
}

/// Starts a server that handles at most `max_requests` requests or runs 20 s.
pub fn serve(body: Vec<u8>, mode: Mode, max_requests: usize) -> Server {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    listener.set_nonblocking(true).expect("nonblocking");
    let base = format!("http://{}", listener.local_addr().unwrap());
    let ranges = Arc::new(Mutex::new(Vec::new()));
    let seen = ranges.clone();
    let handle = std::thread::spawn(move || {
        let deadline = Instant::now() + Duration::from_secs(20);
        let mut handled = 0;
        while handled < max_requests && Instant::now() < deadline {
            match listener.accept() {
                Ok((stream, _)) => {
                    handled += 1;
                    let _ = handle(stream, &body, mode, &seen);
                }
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                    std::thread::sleep(Duration::from_millis(5))
                }
                Err(_) => break,
            }
        }
    });
    Server {
        base,
        ranges,
        handle: Some(handle),
    }
}

/// A port on which nothing listens (bound, then released).
pub fn dead_url() -> String {
    let l = TcpListener::bind("127.0.0.1:0").expect("bind loopback");
    let addr = l.local_addr().unwrap();
    drop(l);
    format!("http://{addr}/file.bin")
}

fn handle(
    mut s: TcpStream,
    body: &[u8],
    mode: Mode,
    seen: &Mutex<Vec<Option<String>>>,
) -> std::io::Result<()> {
    s.set_nonblocking(false)?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let mut req = Vec::new();
    let mut buf = [0u8; 1024];
    while !req.windows(4).any(|w| w == b"\r\n\r\n") && req.len() < 16 * 1024 {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        req.extend_from_slice(&buf[..n]);
    }
    let text = String::from_utf8_lossy(&req);
    let path = text.split_whitespace().nth(1).unwrap_or("/").to_string();
    let range = text.lines().find_map(|l| {
        let (k, v) = l.split_once(':')?;
        k.eq_ignore_ascii_case("range")
            .then(|| v.trim().to_string())
    });
    seen.lock().unwrap().push(range.clone());
    if let Some(target) = path.strip_prefix("/redirect") {
        let head = format!(
            "HTTP/1.1 302 Found\r\nLocation: {target}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        return s.write_all(head.as_bytes());
    }
    let start = match (mode, &range) {
        (Mode::IgnoreRange, _) | (_, None) => None,
        (_, Some(r)) => r
            .strip_prefix("bytes=")
            .and_then(|r| r.strip_suffix('-'))
            .and_then(|n| n.parse::<usize>().ok()),
    };
    let (status, part, extra) = match start {
        Some(n) if n >= body.len() => {
            let head = format!(
                "HTTP/1.1 416 Range Not Satisfiable\r\nContent-Range: bytes */{}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n",
                body.len()
            );
            return s.write_all(head.as_bytes());
        }
        Some(n) => (
            "206 Partial Content",
            &body[n..],
            format!(
                "Content-Range: bytes {n}-{}/{}\r\n",
                body.len() - 1,
                body.len()
            ),
        ),
        None => ("200 OK", body, String::new()),
    };
    let head = format!(
        "HTTP/1.1 {status}\r\nContent-Type: application/octet-stream\r\nContent-Length: {}\r\n{extra}Connection: close\r\n\r\n",
        part.len()
    );
    s.write_all(head.as_bytes())?;
    let send = match mode {
        Mode::TruncateAfter(k) | Mode::StallAfter(k) => &part[..k.min(part.len())],
        _ => part,
    };
    s.write_all(send)?;
    s.flush()?;
    if let Mode::StallAfter(_) = mode {
        std::thread::sleep(Duration::from_secs(3));
    }
    let _ = s.shutdown(std::net::Shutdown::Both);
    Ok(())
}
