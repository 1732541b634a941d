//! Output files are written under a temporary name and renamed into place on
//! success: a failed run never leaves a partial file where a good one was, and
//! an output can never truncate the input being read. Devices and pipes
//! (`/dev/null`, a FIFO) are written in place.

use std::fs::{File, OpenOptions};
use std::io::{BufWriter, StdoutLock, Write};
use std::path::{Path, PathBuf};

use anyhow::Context as _;

use crate::exit::{CliResult, Failure};

/// A file (or standard output for `-`) that exists under its name only after [`Output::commit`].
pub struct Output {
    path: PathBuf,
    sink: Sink,
    /// The temporary file, removed on drop unless committed.
    tmp: Option<PathBuf>,
}

enum Sink {
    Stdout(BufWriter<StdoutLock<'static>>),
    File(BufWriter<File>),
}

impl Output {
    /// Starts writing `path`; refuses a path that is one of `inputs`.
    pub fn create(path: &Path, inputs: &[&Path]) -> CliResult<Self> {
        if path == Path::new("-") {
            let sink = Sink::Stdout(BufWriter::with_capacity(1 << 20, std::io::stdout().lock()));
            return Ok(Self {
                path: path.to_owned(),
                sink,
                tmp: None,
            });
        }
        for input in inputs {
            if same_file(path, input) {
                return Err(Failure::Usage(anyhow::anyhow!(
                    "output {} is the input file: choose another output",
                    path.display()
                )));
            }
        }
        match std::fs::metadata(path) {
            // a device or a pipe (`/dev/null`, a FIFO) is written in place: renaming
            // a file over it would replace the device itself
            Ok(metadata) if !metadata.is_file() => {
                let file = OpenOptions::new()
                    .write(true)
                    .open(path)
                    .with_context(|| format!("opening {}", path.display()))?;
                let sink = Sink::File(BufWriter::with_capacity(1 << 20, file));
                Ok(Self {
                    path: path.to_owned(),
                    sink,
                    tmp: None,
                })
            }
            // an existing file is replaced where it really is, keeping symlinks to it
            Ok(_) => {
                let target = path
                    .canonicalize()
                    .with_context(|| format!("resolving {}", path.display()))?;
                Self::through_temporary(target)
            }
            Err(_) => Self::through_temporary(path.to_owned()),
        }
    }

    fn through_temporary(path: PathBuf) -> CliResult<Self> {
        let parent = path
            .parent()
            .filter(|parent| !parent.as_os_str().is_empty())
            .unwrap_or(Path::new("."));
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
        let name = path.file_name().and_then(|name| name.to_str()).unwrap_or("output");
        let tmp = parent.join(format!(".{name}.{}.tmp", std::process::id()));
        let file = File::create(&tmp).with_context(|| format!("creating {}", tmp.display()))?;
        Ok(Self {
            path,
            sink: Sink::File(BufWriter::with_capacity(1 << 20, file)),
            tmp: Some(tmp),
        })
    }

    /// Flushes, syncs and renames the file into place.
    pub fn commit(mut self) -> anyhow::Result<()> {
        let context = || format!("writing {}", self.path.display());
        match &mut self.sink {
            Sink::Stdout(writer) => writer.flush().with_context(context)?,
            Sink::File(writer) => {
                writer.flush().with_context(context)?;
                if self.tmp.is_some() {
                    writer.get_ref().sync_all().with_context(context)?;
                }
            }
        }
        if let Some(tmp) = self.tmp.take() {
            std::fs::rename(&tmp, &self.path)
                .with_context(|| format!("renaming {} to {}", tmp.display(), self.path.display()))?;
        }
        Ok(())
    }
}

impl Write for Output {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match &mut self.sink {
            Sink::Stdout(writer) => writer.write(buf),
            Sink::File(writer) => writer.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match &mut self.sink {
            Sink::Stdout(writer) => writer.write_all(buf),
            Sink::File(writer) => writer.write_all(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match &mut self.sink {
            Sink::Stdout(writer) => writer.flush(),
            Sink::File(writer) => writer.flush(),
        }
    }
}

impl Drop for Output {
    fn drop(&mut self) {
        if let Some(tmp) = self.tmp.take() {
            // not committed: the run failed, leave nothing behind
            let _ = std::fs::remove_file(tmp);
        }
    }
}

/// Writes `bytes` to `path` atomically; refuses a path that is one of `inputs`.
pub fn write_atomically(path: &Path, bytes: &[u8], inputs: &[&Path]) -> CliResult {
    let mut output = Output::create(path, inputs)?;
    output
        .write_all(bytes)
        .with_context(|| format!("writing {}", path.display()))?;
    output.commit()?;
    Ok(())
}

pub(crate) fn same_file(a: &Path, b: &Path) -> bool {
    match (a.canonicalize(), b.canonicalize()) {
        (Ok(a), Ok(b)) => a == b,
        _ => false,
    }
}
