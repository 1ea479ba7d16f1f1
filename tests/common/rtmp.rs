//! A real RTMP server for the tests: Debian's nginx with `libnginx-mod-rtmp`, started
//! on a free loopback port with a configuration of its own (the test command installs
//! both).

use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const MODULE: &str = "/usr/lib/nginx/modules/ngx_rtmp_module.so";

/// nginx serving RTMP `live` on `127.0.0.1:port`.
pub struct RtmpServer {
    child: Child,
    /// The listening port.
    pub port: u16,
    dir: PathBuf,
}

impl RtmpServer {
    /// Starts nginx in the foreground; panics with a clear message when it is missing.
    pub fn start() -> RtmpServer {
        assert!(
            std::path::Path::new(MODULE).exists() && Command::new("nginx").arg("-v").output().is_ok(),
            "nginx with libnginx-mod-rtmp is needed (scripts/install-deps.sh test installs it)"
        );
        let port = super::free_server_port();
        let dir =
            std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join(format!("nginx-rtmp-{}-{port}", std::process::id()));
        std::fs::create_dir_all(dir.join("logs")).unwrap();
        let config = format!(
            "load_module {MODULE};\n\
             daemon off;\nmaster_process off;\nworker_processes 1;\n\
             pid {dir}/nginx.pid;\nerror_log {dir}/logs/error.log info;\n\
             events {{ worker_connections 64; }}\n\
             rtmp {{ server {{ listen 127.0.0.1:{port}; chunk_size 4096;\n\
               application live {{ live on; record off; }} }} }}\n",
            dir = dir.display()
        );
        let conf = dir.join("nginx.conf");
        std::fs::write(&conf, config).unwrap();
        let child = Command::new("nginx")
            .arg("-p")
            .arg(&dir)
            .arg("-c")
            .arg(&conf)
            .arg("-e")
            .arg(dir.join("logs/error.log"))
            .stdout(Stdio::null())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("start nginx");
        let deadline = Instant::now() + Duration::from_secs(10);
        while TcpStream::connect(("127.0.0.1", port)).is_err() {
            assert!(Instant::now() < deadline, "nginx did not listen on {port}");
            std::thread::sleep(Duration::from_millis(50));
        }
        RtmpServer { child, port, dir }
    }

    /// The URL to publish or play `key` at.
    pub fn url(&self, key: &str) -> String {
        format!("rtmp://127.0.0.1:{}/live/{key}", self.port)
    }

    /// nginx's error log (for a failed assertion's message).
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("logs/error.log")).unwrap_or_default()
    }
}

impl Drop for RtmpServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}
