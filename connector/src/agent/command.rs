//! The command agent: runs a local program once per visitor message, with the message JSON on
//! its stdin, and streams what it prints.
//!
//! # Contract with the program
//!
//! - It is started directly (no shell) from the configured argv, in the connector's working
//!   directory, with the connector's environment minus `AIRLOCK_CONNECTOR_KEY` (the program has
//!   no business impersonating the connector).
//! - stdin carries the payload documented in `payload.rs` (`{message, session, history, context,
//!   system_prompt, attempt}`) as one JSON object, then is closed.
//! - Each line it prints on stdout is shown to the visitor as soon as it is printed; the reply is
//!   the lines joined with `\n` (blank lines at the start and end dropped). Output is read as
//!   UTF-8, invalid bytes replaced.
//! - Exit status 0 is success (an empty reply is retried, like any agent's). 75 (`EX_TEMPFAIL`)
//!   means "try again later": the message is offered again after a back-off. Any other status, or
//!   death by a signal, dead-letters the message at once with the status and the last line of
//!   stderr; stderr is also logged then.
//! - When the attempt is abandoned (agent timeout, lease lost, shutdown) the program is killed.

use std::io::ErrorKind;
use std::process::Stdio;

use async_trait::async_trait;
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncReadExt, AsyncWriteExt, BufReader};

use super::payload::AgentPayload;
use super::{Agent, AgentError, AgentReply, AgentRequest, DeltaSink};

/// `EX_TEMPFAIL` from `sysexits.h`: the conventional "temporary failure, retry later".
const EX_TEMPFAIL: i32 = 75;
/// Most stderr kept (its end): enough for a traceback, bounded for a program that floods it.
const STDERR_KEPT_BYTES: usize = 16 * 1024;
/// Most stderr written to the log on failure.
const STDERR_LOGGED_CHARS: usize = 2000;
/// The connector's own key is withheld from the program.
const WITHHELD_ENV: &str = "AIRLOCK_CONNECTOR_KEY";

/// Runs `argv` per message.
pub struct CommandAgent {
    argv: Vec<String>,
}

impl std::fmt::Debug for CommandAgent {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Only the program: arguments may carry tokens.
        f.debug_struct("CommandAgent")
            .field("program", &self.argv.first())
            .finish_non_exhaustive()
    }
}

impl CommandAgent {
    /// The agent running `argv[0]` with the rest as arguments. An empty `argv` (which
    /// [`crate::Config::validate`] refuses) fails every message.
    pub fn new(argv: Vec<String>) -> CommandAgent {
        CommandAgent { argv }
    }
}

#[async_trait]
impl Agent for CommandAgent {
    fn name(&self) -> &str {
        "command"
    }

    async fn respond(
        &self,
        request: &AgentRequest,
        sink: &DeltaSink,
    ) -> Result<AgentReply, AgentError> {
        let (program, args) = self
            .argv
            .split_first()
            .ok_or_else(|| AgentError::permanent("the command agent has no program to run"))?;
        let input = serde_json::to_vec(&AgentPayload::new(request))
            .map_err(|e| AgentError::permanent(format!("cannot encode the message JSON: {e}")))?;
        let mut child = tokio::process::Command::new(program)
            .args(args)
            .env_remove(WITHHELD_ENV)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // The worker drops this future on timeout or a lost lease; the program must not
            // outlive it and keep answering a message that is no longer ours.
            .kill_on_drop(true)
            .spawn()
            .map_err(|e| spawn_error(program, &e))?;
        let (Some(mut stdin), Some(stdout), Some(stderr)) =
            (child.stdin.take(), child.stdout.take(), child.stderr.take())
        else {
            unreachable!("all three streams were asked to be piped");
        };

        // Written while stdout and stderr are read, so a program that answers before it has
        // read all of its input cannot deadlock against us on full pipes.
        let feed = async move {
            match stdin.write_all(&input).await {
                // A program may well ignore its input and exit.
                Err(e) if e.kind() == ErrorKind::BrokenPipe => {}
                Err(e) => {
                    tracing::debug!(error = %e, "could not write the message to the command's stdin")
                }
                Ok(()) => {}
            }
            // Dropping stdin closes it: the program sees the end of its input.
        };
        let (_, transcript, stderr) = tokio::join!(feed, read_lines(stdout, sink), tail(stderr));
        let status = child
            .wait()
            .await
            .map_err(|e| AgentError::retryable(format!("lost track of `{program}`: {e}")))?;
        let transcript = transcript.map_err(|e| {
            AgentError::retryable(format!("cannot read the output of `{program}`: {e}"))
        })?;
        let stderr = String::from_utf8_lossy(&stderr);

        if status.success() {
            if !stderr.trim().is_empty() {
                tracing::debug!(program, stderr = %truncate(&stderr, STDERR_LOGGED_CHARS), "the command wrote to stderr");
            }
            let text = transcript.finish();
            if text.trim().is_empty() {
                return Err(AgentError::retryable(format!(
                    "`{program}` printed an empty reply"
                )));
            }
            return Ok(AgentReply { text });
        }

        tracing::warn!(program, %status, stderr = %truncate(&stderr, STDERR_LOGGED_CHARS), "the command failed");
        let last_line = stderr
            .lines()
            .rev()
            .map(str::trim)
            .find(|line| !line.is_empty())
            .map(|line| format!(": {}", truncate(line, 300)))
            .unwrap_or_default();
        if status.code() == Some(EX_TEMPFAIL) {
            Err(AgentError::retryable(format!(
                "`{program}` asked to be retried later ({status}){last_line}"
            )))
        } else {
            Err(AgentError::permanent(format!(
                "`{program}` failed ({status}){last_line}"
            )))
        }
    }
}

/// Why the program could not be started, and whether starting it again may work.
fn spawn_error(program: &str, error: &std::io::Error) -> AgentError {
    match error.kind() {
        ErrorKind::NotFound => AgentError::permanent(format!(
            "cannot run `{program}`: no such program (check AIRLOCK_COMMAND, and PATH for a bare name)"
        )),
        ErrorKind::PermissionDenied => AgentError::permanent(format!(
            "cannot run `{program}`: permission denied (is it executable?)"
        )),
        // Passing: a script being rewritten as we start it, or the system short of processes
        // or memory.
        ErrorKind::ExecutableFileBusy
        | ErrorKind::ResourceBusy
        | ErrorKind::WouldBlock
        | ErrorKind::OutOfMemory
        | ErrorKind::Interrupted => {
            AgentError::retryable(format!("cannot run `{program}` right now: {error}"))
        }
        // E.g. "Exec format error": a script without its `#!` line. Starting it again will fail
        // the same way.
        _ => AgentError::permanent(format!("cannot run `{program}`: {error}")),
    }
}

/// Pushes each line of `stdout` to `sink` as it is printed; returns them all.
async fn read_lines<R: AsyncRead + Unpin>(
    stdout: R,
    sink: &DeltaSink,
) -> std::io::Result<Transcript> {
    let mut reader = BufReader::new(stdout);
    let mut transcript = Transcript::default();
    let mut line = Vec::new();
    loop {
        line.clear();
        // Bytes, not `lines()`: one invalid UTF-8 byte must not end the reply.
        if reader.read_until(b'\n', &mut line).await? == 0 {
            return Ok(transcript);
        }
        let text = String::from_utf8_lossy(&line);
        let text = text.strip_suffix('\n').unwrap_or(&text);
        let text = text.strip_suffix('\r').unwrap_or(text);
        if let Some(delta) = transcript.line(text) {
            sink.push(delta);
        }
    }
}

/// The program's stdout lines as reply text, built so that the deltas handed out always add up to
/// a prefix of the final text: the visitor never sees a line break that later disappears.
#[derive(Debug, Default)]
struct Transcript {
    text: String,
    /// Blank lines seen since the last line with text; shown only once more text follows.
    blank_lines: usize,
}

impl Transcript {
    /// Takes one line (without its line end); returns the delta to push, if any.
    fn line(&mut self, line: &str) -> Option<String> {
        if line.is_empty() {
            if !self.text.is_empty() {
                self.blank_lines += 1;
            }
            return None;
        }
        let mut delta = String::new();
        if !self.text.is_empty() {
            delta.push_str(&"\n".repeat(self.blank_lines + 1));
        }
        self.blank_lines = 0;
        delta.push_str(line);
        self.text.push_str(&delta);
        Some(delta)
    }

    fn finish(self) -> String {
        self.text
    }
}

/// The last [`STDERR_KEPT_BYTES`] of `stderr`, read to its end.
async fn tail<R: AsyncRead + Unpin>(mut stderr: R) -> Vec<u8> {
    let mut kept = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match stderr.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                kept.extend_from_slice(&buf[..n]);
                // Trimmed in batches rather than per read, to stay linear.
                if kept.len() > 2 * STDERR_KEPT_BYTES {
                    kept.drain(..kept.len() - STDERR_KEPT_BYTES);
                }
            }
        }
    }
    if kept.len() > STDERR_KEPT_BYTES {
        kept.drain(..kept.len() - STDERR_KEPT_BYTES);
    }
    kept
}

/// At most `max` characters of `text`, marked when cut.
fn truncate(text: &str, max: usize) -> String {
    let text = text.trim();
    match text.char_indices().nth(max) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn transcript(lines: &[&str]) -> (Vec<String>, String) {
        let mut transcript = Transcript::default();
        let deltas = lines.iter().filter_map(|l| transcript.line(l)).collect();
        (deltas, transcript.finish())
    }

    #[test]
    fn lines_are_joined_with_newlines_and_deltas_add_up_to_the_text() {
        let (deltas, text) = transcript(&["one", "two", "three"]);
        assert_eq!(deltas, ["one", "\ntwo", "\nthree"]);
        assert_eq!(text, "one\ntwo\nthree");
        assert_eq!(deltas.concat(), text);
    }

    #[test]
    fn blank_lines_inside_are_kept_and_at_the_edges_dropped() {
        let (deltas, text) = transcript(&["", "", "para one", "", "para two", "", ""]);
        assert_eq!(deltas, ["para one", "\n\npara two"]);
        assert_eq!(text, "para one\n\npara two");
    }

    #[test]
    fn no_output_is_an_empty_transcript() {
        assert_eq!(transcript(&[]).1, "");
        assert_eq!(transcript(&["", ""]).1, "");
    }

    #[test]
    fn truncation_marks_the_cut() {
        assert_eq!(truncate("  short \n", 10), "short");
        assert_eq!(truncate("abcdef", 3), "abc…");
    }

    #[tokio::test]
    async fn stdout_is_split_into_lines_whatever_the_line_ends() {
        let (sink, mut rx) = DeltaSink::channel();
        let output: &[u8] = b"first\r\nsecond \xff\nlast without newline";
        let transcript = read_lines(output, &sink).await.unwrap();
        drop(sink);
        assert_eq!(
            transcript.finish(),
            "first\nsecond \u{fffd}\nlast without newline"
        );
        let mut deltas = Vec::new();
        while let Some(d) = rx.recv().await {
            deltas.push(d);
        }
        assert_eq!(
            deltas,
            ["first", "\nsecond \u{fffd}", "\nlast without newline"]
        );
    }

    #[tokio::test]
    async fn stderr_keeps_only_its_end() {
        let noise = vec![b'x'; 3 * STDERR_KEPT_BYTES];
        let mut input = noise.clone();
        input.extend_from_slice(b"\nthe real error");
        let kept = tail(input.as_slice()).await;
        assert_eq!(kept.len(), STDERR_KEPT_BYTES);
        assert!(kept.ends_with(b"the real error"));
    }

    #[test]
    fn a_missing_or_unexecutable_program_is_permanent_a_busy_one_is_not() {
        let missing = spawn_error("nope", &std::io::Error::from(ErrorKind::NotFound));
        assert!(!missing.retryable);
        assert!(missing.message.contains("no such program"), "{missing}");
        let denied = spawn_error("x.sh", &std::io::Error::from(ErrorKind::PermissionDenied));
        assert!(!denied.retryable && denied.message.contains("executable"));
        assert!(
            spawn_error("x.sh", &std::io::Error::from(ErrorKind::ExecutableFileBusy)).retryable
        );
    }
}
