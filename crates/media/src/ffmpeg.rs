//! Running ffmpeg and ffprobe: cancellable, with progress, and with a readable reason when
//! they fail.

use std::collections::VecDeque;
use std::process::Stdio;
use std::time::Duration;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, BufReader};
use tokio::process::Command;
use tokio_util::sync::CancellationToken;

/// Why a media tool did not produce its result.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    /// Stopped on request (the job was cancelled).
    #[error("cancelled")]
    Cancelled,
    /// The tool could not be started (not installed?).
    #[error("could not run {tool}: {source}")]
    Spawn {
        /// Which tool.
        tool: &'static str,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The tool ran and failed, or its output made no sense; `reason` is meant for people.
    #[error("{reason}")]
    Failed {
        /// What went wrong, from the tool's own last words where it gave any.
        reason: String,
    },
    /// Reading or writing a file around the tool failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

impl MediaError {
    /// Whether the tool could not be started because it is not there (not installed, or not on
    /// the PATH).
    pub fn tool_missing(&self) -> bool {
        matches!(self, Self::Spawn { source, .. } if source.kind() == std::io::ErrorKind::NotFound)
    }
}

/// Lines of a tool's error output kept to explain a failure.
const TAIL_LINES: usize = 6;

/// An ffmpeg command with the options every run shares.
pub fn ffmpeg() -> Command {
    let mut command = Command::new("ffmpeg");
    command.args(["-hide_banner", "-nostdin", "-nostats", "-y"]);
    command
}

/// What a finished run left.
pub struct Finished {
    /// The last lines of its error output.
    pub tail: Vec<String>,
}

/// Runs `command`, handing each line of its standard error to `on_stderr` and each
/// `out_time_us=` value from `-progress pipe:1` on its standard output to `on_progress` (in
/// microseconds). Stops it within a moment of `cancel`; a non-zero exit is a
/// [`MediaError::Failed`] carrying the tool's last words.
pub async fn run(
    tool: &'static str,
    command: Command,
    cancel: &CancellationToken,
    on_stderr: impl FnMut(&str),
    mut on_progress: impl FnMut(u64),
) -> Result<Finished, MediaError> {
    let mut line = Vec::new();
    run_with_output(tool, command, cancel, on_stderr, |mut bytes| {
        while !bytes.is_empty() {
            let end = bytes.iter().position(|&b| b == b'\n');
            line.extend_from_slice(&bytes[..end.unwrap_or(bytes.len())]);
            let Some(end) = end else { break };
            bytes = &bytes[end + 1..];
            let text = String::from_utf8_lossy(&line);
            if let Some(micros) = text.strip_prefix("out_time_us=").and_then(|v| v.trim().parse().ok()) {
                on_progress(micros);
            }
            line.clear();
        }
    })
    .await
}

/// Bytes read from a tool's standard output at a time.
const OUTPUT_CHUNK: usize = 256 * 1024;

/// Runs `command` as [`run`] does, handing its standard output to `on_stdout` as raw bytes,
/// in chunks as they come (a stream of raw frames, say).
pub async fn run_with_output(
    tool: &'static str,
    mut command: Command,
    cancel: &CancellationToken,
    mut on_stderr: impl FnMut(&str),
    mut on_stdout: impl FnMut(&[u8]),
) -> Result<Finished, MediaError> {
    command
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    let mut child = command.spawn().map_err(|source| MediaError::Spawn { tool, source })?;
    // Split on newlines, not UTF-8 lines: ffmpeg echoes a file's metadata tags, which need not
    // be UTF-8, and one such line must not end the run.
    let stderr = child.stderr.take().map(|err| BufReader::new(err).split(b'\n'));
    let (Some(mut stdout), Some(mut stderr)) = (child.stdout.take(), stderr) else {
        return Err(MediaError::Failed {
            reason: format!("{tool} started without its output pipes"),
        });
    };
    let mut chunk = vec![0; OUTPUT_CHUNK];
    let mut tail = VecDeque::with_capacity(TAIL_LINES);
    let (mut stdout_open, mut stderr_open) = (true, true);
    while stdout_open || stderr_open {
        tokio::select! {
            () = cancel.cancelled() => {
                let _ = child.start_kill();
                let _ = tokio::time::timeout(Duration::from_secs(1), child.wait()).await;
                return Err(MediaError::Cancelled);
            }
            read = stdout.read(&mut chunk), if stdout_open => match read? {
                0 => stdout_open = false,
                n => on_stdout(&chunk[..n]),
            },
            line = stderr.next_segment(), if stderr_open => match line? {
                Some(line) => {
                    let line = String::from_utf8_lossy(&line).trim_end_matches('\r').to_owned();
                    on_stderr(&line);
                    if tail.len() == TAIL_LINES {
                        tail.pop_front();
                    }
                    tail.push_back(line);
                }
                None => stderr_open = false,
            },
        }
    }
    let status = tokio::select! {
        () = cancel.cancelled() => {
            let _ = child.start_kill();
            return Err(MediaError::Cancelled);
        }
        status = child.wait() => status?,
    };
    let tail: Vec<String> = tail.into_iter().collect();
    if status.success() {
        Ok(Finished { tail })
    } else {
        Err(MediaError::Failed {
            reason: explain(tool, &tail),
        })
    }
}

/// A failure in words: the tool's most telling last line, without its `[demuxer @ 0x...]`
/// noise and the input's path.
fn explain(tool: &str, tail: &[String]) -> String {
    let telling = tail
        .iter()
        .rev()
        .map(|line| strip_context(line))
        .find(|line| !line.is_empty() && !line.starts_with("Conversion failed"))
        .unwrap_or("no error output");
    format!("{tool} could not read the video: {telling}")
}

fn strip_context(line: &str) -> &str {
    let line = line.trim();
    let line = match (line.starts_with('['), line.find("] ")) {
        (true, Some(end)) => &line[end + 2..],
        _ => line,
    };
    // "/data/assets/...: Invalid data found when processing input": keep what follows the path.
    match line.rfind(": ") {
        Some(at) if line.starts_with('/') => &line[at + 2..],
        _ => line,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_a_tool_that_is_not_there_counts_as_missing() {
        let spawn = |source| MediaError::Spawn {
            tool: "ffprobe",
            source,
        };
        let not_installed = std::process::Command::new("keyframe-no-such-tool")
            .spawn()
            .expect_err("no such program");
        assert!(spawn(not_installed).tool_missing());
        assert!(!spawn(std::io::Error::from(std::io::ErrorKind::PermissionDenied)).tool_missing());
        assert!(!spawn(std::io::Error::from(std::io::ErrorKind::OutOfMemory)).tool_missing());
    }

    #[test]
    fn a_failure_is_explained_by_the_tools_last_telling_line() {
        let tail = vec![
            "[mov,mp4,m4a,3gp,3g2,mj2 @ 0x55d] moov atom not found".to_owned(),
            "/data/assets/0192/a.mp4: Invalid data found when processing input".to_owned(),
        ];
        assert_eq!(
            explain("ffmpeg", &tail),
            "ffmpeg could not read the video: Invalid data found when processing input"
        );
        assert_eq!(
            explain("ffprobe", &[]),
            "ffprobe could not read the video: no error output"
        );
    }
}
