//! A server the benchmark starts itself: `mcu serve` on loopback, with room limits
//! raised.

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

use super::peer::Target;

/// A server started by the benchmark.
pub struct Server {
    child: Child,
    /// `http://127.0.0.1:PORT`
    pub url: String,
}

impl Server {
    /// Starts `mcu serve` (this executable) on loopback with room limits raised.
    pub fn start(work: &Path) -> Result<Self, String> {
        Self::start_configured(work, "")
    }

    /// [`Self::start`] with `extra` TOML sections added to its configuration.
    pub fn start_configured(work: &Path, extra: &str) -> Result<Self, String> {
        let config = work.join("mcu-bench.toml");
        std::fs::write(
            &config,
            format!(
                "[server]\nmax_participants_per_room = 100\nmax_rooms = 64\njoin_rate_per_min = 0\nmax_cpu_cores = 0\n\
                 [rtc]\ninclude_loopback = true\ninterfaces = [\"lo\"]\n{extra}"
            ),
        )
        .map_err(|e| e.to_string())?;
        Self::start_with(&config)
    }

    /// Starts `mcu serve` with a configuration file.
    pub fn start_with(config: &Path) -> Result<Self, String> {
        let exe = server_exe()?;
        let mut child = Command::new(&exe)
            .arg("serve")
            .arg("--config")
            .arg(config)
            .arg("--listen")
            .arg("127.0.0.1:0")
            .env("RUST_LOG", std::env::var("MCU_BENCH_SERVER_LOG").unwrap_or_else(|_| "error".into()))
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .map_err(|e| format!("cannot start server {}: {e}", exe.display()))?;
        let stdout = child.stdout.take().ok_or("no stdout")?;
        let mut line = String::new();
        BufReader::new(stdout).read_line(&mut line).map_err(|e| e.to_string())?;
        let url = line.trim().strip_prefix("listening on ").ok_or_else(|| format!("unexpected: {line}"))?.to_owned();
        Ok(Self { child, url })
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub(crate) fn target(&self, room: String) -> Target {
        Target::Mcu { base: self.url.clone(), room }
    }
}

/// The server binary: `$MCU_BIN`, else `mcu` beside this executable (both are built
/// into the same target directory by `cargo build --workspace`).
pub fn server_exe() -> Result<PathBuf, String> {
    if let Some(bin) = std::env::var_os("MCU_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let exe = me.with_file_name(format!("mcu{}", std::env::consts::EXE_SUFFIX));
    if exe.exists() {
        Ok(exe)
    } else {
        Err(format!("no server binary at {} (build it: cargo build --release --workspace)", exe.display()))
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
