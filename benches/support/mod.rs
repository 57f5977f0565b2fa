//! What the benchmark and the chaos soak share: child processes that die with the run, free
//! loopback ports, a process's CPU time and resident memory from /proc, waiting for a server,
//! and nginx as the bare reverse-proxy baseline.
#![allow(dead_code)]

use std::process::Child;
use std::time::Duration;

/// A child process killed (and reaped) when dropped.
pub struct Proc(pub Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Path of a release binary staged by `scripts/bench.sh` / `scripts/chaos.sh` in
/// `BENCH_BIN_DIR`. They are copied there because `cargo bench` itself rebuilds the package's
/// binaries into `target/release` with the bench profile (this package unoptimized), which would
/// otherwise replace the release builds the run is meant to measure.
pub fn release_bin(name: &str) -> String {
    let dir = std::env::var("BENCH_BIN_DIR").unwrap_or_else(|_| "target/bench-bin".into());
    format!("{dir}/{name}")
}

/// A loopback port nobody listens on right now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .unwrap_or(0)
}

/// Resident set size in KiB (0 once the process is gone).
pub fn rss_kib(pid: u32) -> u64 {
    std::fs::read_to_string(format!("/proc/{pid}/status"))
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0)
}

/// User + system CPU time of a process.
pub fn cpu(pid: u32) -> Duration {
    let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
        return Duration::ZERO;
    };
    let rest = &stat[stat.rfind(')').map_or(0, |i| i + 2)..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 =
        f.get(11).and_then(|v| v.parse().ok()).unwrap_or(0) + f.get(12).and_then(|v| v.parse().ok()).unwrap_or(0);
    Duration::from_millis(ticks * 10)
}

/// Waits (up to 20 s) until `url` answers at all.
pub async fn wait_ready(http: &reqwest::Client, url: &str) {
    for _ in 0..400 {
        if http.get(url).send().await.is_ok() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("{url} did not come up");
}

/// The hard open-file limit of this process (what a child may raise its own limit to).
pub fn hard_nofile() -> u64 {
    std::fs::read_to_string("/proc/self/limits")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Max open files"))
                .and_then(|l| l.split_whitespace().nth(4))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(4096)
}

/// Debian's nginx as one bare reverse-proxy hop to `upstream_port`: one process (no master, no
/// daemon), no buffering, HTTP/1.1 keep-alive to the upstream, no access log; its config, pid,
/// error log and temp files live in `dir`. Panics if nginx is missing.
pub fn nginx_hop(dir: &std::path::Path, port: u16, upstream_port: u16) -> Proc {
    let dir = dir.join("nginx");
    std::fs::create_dir_all(&dir).expect("nginx temp dir");
    let d = dir.display();
    let files = hard_nofile().min(65_536);
    let conf = format!(
        "daemon off;\nmaster_process off;\nworker_processes 1;\nworker_rlimit_nofile {files};\n\
         pid {d}/nginx.pid;\nerror_log {d}/error.log warn;\n\
         events {{ worker_connections {files}; }}\n\
         http {{\n  access_log off;\n  client_body_temp_path {d}/body;\n  proxy_temp_path {d}/proxy;\n\
         \x20 fastcgi_temp_path {d}/fastcgi;\n  uwsgi_temp_path {d}/uwsgi;\n  scgi_temp_path {d}/scgi;\n\
         \x20 keepalive_requests 1000000;\n\
         \x20 upstream mock {{ server 127.0.0.1:{upstream_port}; keepalive 1024; keepalive_requests 1000000; }}\n\
         \x20 server {{\n    listen 127.0.0.1:{port};\n    location / {{\n      proxy_pass http://mock;\n\
         \x20     proxy_http_version 1.1;\n      proxy_set_header Connection \"\";\n\
         \x20     proxy_buffering off;\n      proxy_request_buffering off;\n    }}\n  }}\n}}\n"
    );
    let path = dir.join("nginx.conf");
    std::fs::write(&path, conf).expect("write nginx.conf");
    let bin = ["/usr/sbin/nginx", "/usr/bin/nginx"]
        .into_iter()
        .find(|p| std::path::Path::new(p).exists())
        .unwrap_or("nginx");
    Proc(
        std::process::Command::new(bin)
            .arg("-p")
            .arg(&dir)
            .arg("-e")
            .arg(dir.join("error.log"))
            .arg("-c")
            .arg(&path)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("nginx is needed for the baseline (Debian: apt-get install nginx-light)"),
    )
}
