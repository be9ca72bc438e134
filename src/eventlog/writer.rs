//! Where lines go: the writer that formats records into one batch buffer and writes it to the
//! file (reopened on request and after rotation), stdout or nowhere.

use std::fmt;
use std::fs::File;
use std::io::{self, Write};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;

use super::{Record, format_json, format_key_value};
use crate::config::{LogDestination, LogFormat};

/// The logger writes when its batch buffer passes this size, so one write carries many lines
/// without the buffer growing without bound.
pub(super) const WRITE_BATCH_BYTES: usize = 64 * 1024;

/// What the logger writes and where.
#[derive(Debug, Clone)]
pub struct WriterConfig {
    /// Line format.
    pub format: LogFormat,
    /// Destination.
    pub destination: LogDestination,
    /// Appended as `machineid=` when set (`EnableMachineIDDecoration`).
    pub machine_id: Option<String>,
}

/// Errors opening the log file.
#[derive(Debug)]
pub struct OpenError {
    /// The file.
    pub path: PathBuf,
    /// The OS error.
    pub source: io::Error,
}

impl fmt::Display for OpenError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "opening event log {}: {}",
            self.path.display(),
            self.source
        )
    }
}

impl std::error::Error for OpenError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        Some(&self.source)
    }
}

/// The logger side: formats and writes.
#[derive(Debug)]
pub struct LogWriter {
    config: WriterConfig,
    file: Option<(File, u64, u64)>,
    buf: Vec<u8>,
}

fn open_append(path: &PathBuf) -> Result<(File, u64, u64), OpenError> {
    use std::os::unix::fs::OpenOptionsExt;
    let file = std::fs::OpenOptions::new()
        .append(true)
        .create(true)
        .mode(0o640)
        .custom_flags(libc::O_CLOEXEC)
        .open(path)
        .map_err(|source| OpenError {
            path: path.clone(),
            source,
        })?;
    let meta = file.metadata().map_err(|source| OpenError {
        path: path.clone(),
        source,
    })?;
    Ok((file, meta.dev(), meta.ino()))
}

impl LogWriter {
    /// Opens the destination (a file is created if missing, appended to otherwise).
    pub fn new(config: WriterConfig) -> Result<LogWriter, OpenError> {
        let file = match &config.destination {
            LogDestination::File(path) => Some(open_append(path)?),
            _ => None,
        };
        Ok(LogWriter {
            config,
            file,
            buf: Vec::with_capacity(WRITE_BATCH_BYTES * 2),
        })
    }

    /// Reopens the file (after rotation or on SIGHUP). On failure the old handle stays.
    pub fn reopen(&mut self) -> Result<(), OpenError> {
        if let LogDestination::File(path) = &self.config.destination {
            self.file = Some(open_append(path)?);
        }
        Ok(())
    }

    /// Reopens when the path no longer names the open file (renamed or deleted away).
    pub fn reopen_if_rotated(&mut self) -> Result<bool, OpenError> {
        let LogDestination::File(path) = &self.config.destination else {
            return Ok(false);
        };
        let current = std::fs::metadata(path).ok().map(|m| (m.dev(), m.ino()));
        let open = self.file.as_ref().map(|(_, dev, ino)| (*dev, *ino));
        if current.is_some() && current == open {
            return Ok(false);
        }
        self.reopen()?;
        Ok(true)
    }

    /// Formats one record into the batch buffer.
    pub fn format(&mut self, rec: &Record) {
        let machine_id = self.config.machine_id.as_deref();
        match self.config.format {
            LogFormat::KeyValue { timestamp_prefix } => {
                format_key_value(&mut self.buf, rec, timestamp_prefix, machine_id)
            }
            LogFormat::Json => format_json(&mut self.buf, rec, machine_id),
        }
    }

    /// Bytes waiting in the batch buffer.
    pub fn pending_bytes(&self) -> usize {
        self.buf.len()
    }

    /// Writes the batch buffer out.
    pub fn flush(&mut self) -> io::Result<()> {
        if self.buf.is_empty() {
            return Ok(());
        }
        let result = match (&self.config.destination, &mut self.file) {
            (LogDestination::Null, _) => Ok(()),
            (LogDestination::Stdout, _) => {
                let mut out = io::stdout().lock();
                out.write_all(&self.buf).and_then(|_| out.flush())
            }
            (LogDestination::File(_), Some((file, _, _))) => file.write_all(&self.buf),
            (LogDestination::File(_), None) => Err(io::Error::from(io::ErrorKind::NotFound)),
        };
        self.buf.clear();
        result
    }
}
