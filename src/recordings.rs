//! The recordings directory: naming new files (never overwriting one), listing them,
//! and telling a safe file name from a path-traversal attempt.

use std::fs::OpenOptions;
use std::path::{Path, PathBuf};
use std::time::SystemTime;

use serde::Serialize;

use crate::media::recorder::Container;

/// Extensions of recordings.
pub const EXTENSIONS: [&str; 2] = ["webm", "mp4"];

/// The directory recordings live in.
#[derive(Debug, Clone)]
pub struct RecordingStore {
    dir: PathBuf,
}

/// A new, empty recording file reserved for a room.
#[derive(Debug, Clone)]
pub struct NewRecording {
    /// Opaque id of the recording.
    pub id: String,
    /// File name inside the directory.
    pub file: String,
    /// Full path.
    pub path: PathBuf,
}

/// What `GET /recordings` shows of a file.
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct RecordingFile {
    /// File name, as in `GET /recordings/{file}`.
    pub file: String,
    /// Size in bytes.
    pub bytes: u64,
    /// Last write, Unix seconds.
    pub modified: u64,
}

/// Why the directory could not be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The directory cannot be created or written.
    #[error("recordings directory {dir} is not writable: {reason}")]
    Unwritable {
        /// The directory.
        dir: PathBuf,
        /// The OS error.
        reason: String,
    },
    /// The directory cannot be listed.
    #[error("cannot list recordings: {0}")]
    List(String),
}

impl RecordingStore {
    /// Recordings go to `dir` (created on first use).
    pub fn new(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    /// The directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Creates a new empty file for `room`, named after the room and the UTC start
    /// time plus a random suffix; fails rather than reuse an existing name.
    pub fn create(&self, room: &str, container: Container) -> Result<NewRecording, StoreError> {
        let unwritable = |e: std::io::Error| StoreError::Unwritable { dir: self.dir.clone(), reason: e.to_string() };
        std::fs::create_dir_all(&self.dir).map_err(unwritable)?;
        let id = uuid::Uuid::new_v4().simple().to_string()[..12].to_owned();
        let file = format!("{room}-{}-{id}.{}", utc_stamp(SystemTime::now()), container.extension());
        let path = self.dir.join(&file);
        OpenOptions::new().write(true).create_new(true).open(&path).map_err(unwritable)?;
        Ok(NewRecording { id, file, path })
    }

    /// Every recording, newest first.
    pub fn list(&self) -> Result<Vec<RecordingFile>, StoreError> {
        let entries = match std::fs::read_dir(&self.dir) {
            Ok(e) => e,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(StoreError::List(e.to_string())),
        };
        let mut files: Vec<RecordingFile> = entries
            .filter_map(Result::ok)
            .filter_map(|entry| {
                let file = entry.file_name().into_string().ok()?;
                let meta = entry.metadata().ok()?;
                (is_recording_name(&file) && meta.is_file()).then(|| RecordingFile {
                    bytes: meta.len(),
                    modified: meta
                        .modified()
                        .ok()
                        .and_then(|t| t.duration_since(SystemTime::UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_secs()),
                    file,
                })
            })
            .collect();
        files.sort_by(|a, b| b.modified.cmp(&a.modified).then_with(|| a.file.cmp(&b.file)));
        Ok(files)
    }
}

/// Whether `name` can be a recording's file name: one path segment of safe
/// characters with the recording extension, so no request can name anything else.
pub fn is_recording_name(name: &str) -> bool {
    let Some(stem) = EXTENSIONS.iter().find_map(|ext| name.strip_suffix(&format!(".{ext}"))) else { return false };
    !stem.is_empty()
        && name.len() <= 160
        && !name.starts_with('.')
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
        && !name.contains("..")
}

/// `YYYYMMDD-HHMMSS` in UTC.
fn utc_stamp(at: SystemTime) -> String {
    let t = time::OffsetDateTime::from(at);
    format!("{:04}{:02}{:02}-{:02}{:02}{:02}", t.year(), u8::from(t.month()), t.day(), t.hour(), t.minute(), t.second())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_plain_recording_names_are_accepted() {
        for ok in ["room-20261124-101500-abcdef012345.webm", "a.webm", "x_y.z.webm", "r-1.mp4"] {
            assert!(is_recording_name(ok), "{ok}");
        }
        for bad in [
            "../etc/passwd",
            "..%2Fetc%2Fpasswd",
            "..webm",
            ".hidden.webm",
            "a/b.webm",
            "a\\b.webm",
            "a..b.webm",
            ".webm",
            "a.mkv",
            ".mp4",
            "a.webm/",
            "",
            "a b.webm",
        ] {
            assert!(!is_recording_name(bad), "{bad}");
        }
    }

    #[test]
    fn stamps_are_utc() {
        let at = SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_795_000_000);
        assert_eq!(utc_stamp(at), "20261118-110640");
    }

    #[test]
    fn creates_unique_files_and_lists_them() {
        let dir = std::env::temp_dir().join(format!("mcu-store-{}", uuid::Uuid::new_v4().simple()));
        let store = RecordingStore::new(&dir);
        assert_eq!(store.list().unwrap(), vec![], "a missing directory lists as empty");
        let a = store.create("r1", Container::Webm).unwrap();
        let b = store.create("r1", Container::Mp4).unwrap();
        assert!(b.file.ends_with(".mp4"));
        assert_ne!(a.file, b.file);
        assert!(is_recording_name(&a.file));
        std::fs::write(dir.join("notes.txt"), b"x").unwrap();
        let listed: Vec<String> = store.list().unwrap().into_iter().map(|f| f.file).collect();
        assert_eq!(listed.len(), 2, "{listed:?}");
        std::fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn an_unusable_directory_is_a_clear_error() {
        let file = std::env::temp_dir().join(format!("mcu-store-file-{}", uuid::Uuid::new_v4().simple()));
        std::fs::write(&file, b"not a directory").unwrap();
        let err = RecordingStore::new(&file).create("r", Container::Webm).unwrap_err();
        assert!(matches!(err, StoreError::Unwritable { .. }), "{err}");
        std::fs::remove_file(&file).unwrap();
    }
}
