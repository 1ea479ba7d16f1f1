//! Janus (Debian package `janus`) with only the HTTP transport and the AudioBridge
//! plugin, on loopback, configured from files the benchmark writes.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use super::peer::{janus_attach, janus_post};

/// Where Debian installs Janus' modules: `/usr/lib/<multiarch>/janus`.
fn find_modules() -> String {
    std::fs::read_dir("/usr/lib")
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path().join("janus"))
        .find(|p| p.join("plugins/libjanus_audiobridge.so").exists())
        .map_or_else(|| "/usr/lib/x86_64-linux-gnu/janus".to_owned(), |p| p.display().to_string())
}

/// A running Janus.
pub struct Janus {
    child: Child,
    /// `http://127.0.0.1:PORT/janus`
    pub base: String,
    dir: PathBuf,
}

impl Janus {
    /// Writes the configuration into a fresh directory under `work` and starts Janus.
    pub async fn start(work: &Path, port: u16) -> Result<Self, String> {
        let modules = std::env::var("JANUS_MODULES").unwrap_or_else(|_| find_modules());
        if !Path::new(&modules).join("plugins/libjanus_audiobridge.so").exists() {
            return Err(format!("janus AudioBridge plugin not found under {modules} (apt-get install janus)"));
        }
        let dir = work.join(format!("janus-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        for sub in ["conf", "plugins", "transports", "events", "loggers"] {
            std::fs::create_dir_all(dir.join(sub)).map_err(|e| e.to_string())?;
        }
        // Only the modules we use: symlinks in private folders.
        let link = |from: &str, to: &str| {
            std::os::unix::fs::symlink(Path::new(&modules).join(from), dir.join(to)).map_err(|e| e.to_string())
        };
        link("plugins/libjanus_audiobridge.so", "plugins/libjanus_audiobridge.so")?;
        link("transports/libjanus_http.so", "transports/libjanus_http.so")?;
        let conf = dir.join("conf");
        let write = |name: &str, text: String| std::fs::write(conf.join(name), text).map_err(|e| e.to_string());
        write(
            "janus.jcfg",
            format!(
                "general: {{\n  configs_folder = \"{conf}\"\n  plugins_folder = \"{d}/plugins\"\n  \
                 transports_folder = \"{d}/transports\"\n  events_folder = \"{d}/events\"\n  \
                 loggers_folder = \"{d}/loggers\"\n  debug_level = 3\n  session_timeout = 0\n  \
                 admin_secret = \"bench\"\n}}\n\
                 media: {{\n  rtp_port_range = \"30000-39999\"\n}}\n\
                 nat: {{\n  nice_debug = false\n  ignore_mdns = true\n}}\n\
                 plugins: {{\n}}\ntransports: {{\n}}\nevents: {{\n  broadcast = false\n}}\n",
                conf = conf.display(),
                d = dir.display()
            ),
        )?;
        write(
            "janus.transport.http.jcfg",
            format!(
                "general: {{\n  json = \"compact\"\n  base_path = \"/janus\"\n  http = true\n  port = {port}\n  \
                 ip = \"127.0.0.1\"\n  https = false\n}}\nadmin: {{\n  admin_http = false\n}}\n"
            ),
        )?;
        write("janus.plugin.audiobridge.jcfg", "general: {\n}\n".to_owned())?;
        let log = std::fs::File::create(dir.join("janus.log")).map_err(|e| e.to_string())?;
        let child = Command::new("janus")
            .arg("-C")
            .arg(conf.join("janus.jcfg"))
            .arg("-F")
            .arg(&conf)
            .arg("-o")
            .stdout(Stdio::from(log.try_clone().map_err(|e| e.to_string())?))
            .stderr(Stdio::from(log))
            .spawn()
            .map_err(|e| format!("cannot start janus: {e}"))?;
        let janus = Janus { child, base: format!("http://127.0.0.1:{port}/janus"), dir };
        let deadline = Instant::now() + Duration::from_secs(15);
        while Instant::now() < deadline {
            if let Ok(r) = reqwest::get(format!("{}/info", janus.base)).await
                && r.status().is_success()
            {
                return Ok(janus);
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        Err(format!("janus did not answer on {} (log: {})", janus.base, janus.dir.join("janus.log").display()))
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Creates an AudioBridge room (48 kHz) and returns its id.
    pub async fn create_room(&self, room: u64) -> Result<u64, String> {
        let (session, handle) = janus_attach(&self.base).await?;
        let reply = janus_post(
            &handle,
            serde_json::json!({"janus": "message", "transaction": "r",
                "body": {"request": "create", "room": room, "sampling_rate": 48000,
                         "audiolevel_event": false, "record": false}}),
        )
        .await?;
        let _ = janus_post(&session, serde_json::json!({"janus": "destroy", "transaction": "d"})).await;
        match reply["plugindata"]["data"]["audiobridge"].as_str() {
            Some("created") => Ok(room),
            _ => Err(format!("janus create room: {reply}")),
        }
    }
}

impl Drop for Janus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
