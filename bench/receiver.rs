//! The push receiver of bench/events.sh and bench/push-drain.sh: RFC 8935 push (POST -> 202) on
//! 127.0.0.1:PORT, standard library only (built by the scripts with `rustc -O`), one thread per
//! connection with blocking reads: it runs on the same two cores as scimd, so it must cost little
//! (the Python asyncio receiver it replaces took 13-15 us of CPU a SET, this one a few).
//!
//!   POST (any path)  a SET, kept with its arrival time as it came; answers 202
//!   GET /reset       forgets what it kept
//!   GET /count       {"count": N}
//!   GET /stats       {count, distinct, p50_ms, p99_ms, max_ms}: distinct jti, and arrival - toe
//!                    (the change's time in the SET) over what it kept, decoded only then
//!
//! Usage: receiver PORT
use std::collections::HashSet;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{SystemTime, UNIX_EPOCH};

type Kept = Arc<Mutex<Vec<(Vec<u8>, f64)>>>;

fn main() {
    let port = std::env::args().nth(1).expect("usage: receiver PORT");
    let listener = TcpListener::bind(format!("127.0.0.1:{port}")).expect("bind");
    let kept: Kept = Arc::default();
    for stream in listener.incoming().flatten() {
        let kept = kept.clone();
        std::thread::spawn(move || serve(stream, kept));
    }
}

fn now() -> f64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0.0, |d| d.as_secs_f64())
}

/// Requests of one keep-alive connection, until it closes or sends something unreadable.
fn serve(stream: TcpStream, kept: Kept) -> Option<()> {
    let _ = stream.set_nodelay(true);
    let mut out = stream.try_clone().ok()?;
    let mut input = BufReader::with_capacity(64 * 1024, stream);
    let mut line = String::new();
    loop {
        line.clear();
        if input.read_line(&mut line).ok()? == 0 {
            return None;
        }
        let mut words = line.split_whitespace();
        let (method, path) = (words.next()?.to_string(), words.next()?.to_string());
        let mut length = 0usize;
        loop {
            line.clear();
            if input.read_line(&mut line).ok()? == 0 {
                return None;
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.trim().eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().ok()?;
                }
            }
        }
        let mut body = vec![0; length];
        input.read_exact(&mut body).ok()?;
        if method == "POST" {
            let arrived = now();
            kept.lock().ok()?.push((body, arrived));
            out.write_all(b"HTTP/1.1 202 Accepted\r\ncontent-length: 0\r\n\r\n").ok()?;
            continue;
        }
        let answer = match path.as_str() {
            "/reset" => {
                kept.lock().ok()?.clear();
                stats(&[])
            }
            "/count" => format!("{{\"count\": {}}}", kept.lock().ok()?.len()),
            _ => stats(&kept.lock().ok()?),
        };
        let head = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            answer.len()
        );
        out.write_all(head.as_bytes()).ok()?;
        out.write_all(answer.as_bytes()).ok()?;
    }
}

/// The statistics of the kept SETs, as JSON.
fn stats(kept: &[(Vec<u8>, f64)]) -> String {
    let mut jtis = HashSet::new();
    let mut latencies = Vec::with_capacity(kept.len());
    for (token, arrived) in kept {
        let Some(claims) = token.split(|&b| b == b'.').nth(1).and_then(base64url) else {
            continue;
        };
        let claims = String::from_utf8_lossy(&claims);
        if let Some(jti) = string_claim(&claims, "jti") {
            jtis.insert(jti.to_string());
        }
        if let Some(toe) = number_claim(&claims, "toe") {
            latencies.push((arrived - toe) * 1000.0);
        }
    }
    latencies.sort_by(f64::total_cmp);
    let pick = |q: f64| {
        latencies
            .get(((q * latencies.len() as f64) as usize).min(latencies.len().saturating_sub(1)))
            .map_or("null".to_string(), |v| format!("{:.1}", v))
    };
    format!(
        "{{\"count\": {}, \"distinct\": {}, \"p50_ms\": {}, \"p99_ms\": {}, \"max_ms\": {}}}",
        kept.len(),
        jtis.len(),
        pick(0.5),
        pick(0.99),
        latencies.last().map_or("null".to_string(), |v| format!("{:.1}", v))
    )
}

/// `"name":"value"` in compact JSON (as scimd writes its claims).
fn string_claim<'a>(json: &'a str, name: &str) -> Option<&'a str> {
    let start = json.find(&format!("\"{name}\":\""))? + name.len() + 4;
    let len = json[start..].find('"')?;
    Some(&json[start..start + len])
}

/// `"name":number` in compact JSON.
fn number_claim(json: &str, name: &str) -> Option<f64> {
    let start = json.find(&format!("\"{name}\":"))? + name.len() + 3;
    let len = json[start..]
        .find(|c: char| !(c.is_ascii_digit() || c == '.' || c == '-' || c == 'e' || c == '+'))
        .unwrap_or(json.len() - start);
    json[start..start + len].parse().ok()
}

/// Base64url without padding (RFC 4648 section 5), as JWS uses it.
fn base64url(text: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(text.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for &c in text {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'-' => 62,
            b'_' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}
