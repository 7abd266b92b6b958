//! Captured stdout and stderr of a function: in-memory buffers that count against the
//! invocation's log budget (`max_log_bytes`), shared with the `log` import. Writing past the
//! budget traps the instance with [`Breach::Log`]; after the call the text becomes log lines.

use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};

use bytes::Bytes;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

use crate::breach::Breach;

/// Largest write permit handed to the guest; the budget is checked on each write.
const WRITE_PERMIT: usize = 64 * 1024;

/// Bytes of log (lines written with `log`, stdout and stderr) an invocation may still write.
#[derive(Debug, Clone)]
pub struct LogBudget {
    used: Arc<AtomicU64>,
    cap: u64,
}

impl LogBudget {
    /// A budget of `cap` bytes.
    pub fn new(cap: u64) -> Self {
        LogBudget {
            used: Arc::new(AtomicU64::new(0)),
            cap,
        }
    }

    /// Starts counting from zero again (a warm instance's next invocation).
    pub fn reset(&self) {
        self.used.store(0, std::sync::atomic::Ordering::Relaxed);
    }

    /// Counts `bytes` against the budget; the breach when it is exceeded.
    pub fn charge(&self, bytes: usize) -> Result<(), Breach> {
        let bytes = bytes as u64;
        let total = self.used.fetch_add(bytes, Ordering::Relaxed) + bytes;
        if total > self.cap {
            return Err(Breach::Log(self.cap));
        }
        Ok(())
    }
}

/// One captured stream (stdout or stderr).
#[derive(Debug, Clone)]
pub struct CapturedOutput {
    buffer: Arc<Mutex<Vec<u8>>>,
    budget: LogBudget,
}

impl CapturedOutput {
    /// An empty capture charging `budget`.
    pub fn new(budget: LogBudget) -> Self {
        CapturedOutput {
            buffer: Arc::default(),
            budget,
        }
    }

    /// Forgets what was written (a warm instance's next invocation).
    pub fn clear(&self) {
        self.buffer
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .clear();
    }

    /// What was written, as text (invalid UTF-8 replaced).
    pub fn text(&self) -> String {
        let buffer = self.buffer.lock().unwrap_or_else(PoisonError::into_inner);
        String::from_utf8_lossy(&buffer).into_owned()
    }

    fn append(&self, bytes: &[u8]) -> Result<(), Breach> {
        self.budget.charge(bytes.len())?;
        self.buffer
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .extend_from_slice(bytes);
        Ok(())
    }
}

#[async_trait::async_trait]
impl Pollable for CapturedOutput {
    async fn ready(&mut self) {}
}

#[async_trait::async_trait]
impl OutputStream for CapturedOutput {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.append(&bytes)
            .map_err(|breach| StreamError::Trap(breach.into()))
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(WRITE_PERMIT)
    }
}

impl tokio::io::AsyncWrite for CapturedOutput {
    fn poll_write(
        self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Poll::Ready(
            self.append(buf)
                .map(|()| buf.len())
                .map_err(io::Error::other),
        )
    }

    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

impl IsTerminal for CapturedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for CapturedOutput {
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }

    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stdout_and_stderr_share_the_log_budget() {
        let budget = LogBudget::new(10);
        let (mut out, mut err) = (
            CapturedOutput::new(budget.clone()),
            CapturedOutput::new(budget.clone()),
        );
        out.write(Bytes::from_static(b"hello\n")).unwrap();
        assert!(matches!(
            err.write(Bytes::from_static(b"world\n")),
            Err(StreamError::Trap(_))
        ));
        assert_eq!(out.text(), "hello\n");
        assert_eq!(budget.charge(0), Err(Breach::Log(10)));
    }
}
