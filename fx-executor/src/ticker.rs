//! The epoch ticker: one thread per engine that advances its epoch, which is how a running
//! function's deadline is enforced.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmtime::Engine;

/// The epoch ticker thread of a runtime, stopped and joined when dropped.
///
/// The thread holds a handle to the engine. Joining it when the runtime goes means the engine
/// (with the pooling allocator's slots) is freed by whoever drops the last handle, there and
/// then: not up to a tick later on the ticker thread, where unmapping the pool (about 1.5 ms)
/// would hold the process's memory map against the next engine's instances.
pub(crate) struct Ticker {
    stop: Arc<AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Ticker {
    /// Starts a thread advancing the epoch of `engine` every `tick`.
    pub(crate) fn start(engine: &Engine, tick: Duration) -> fx_core::Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let (engine, stopped) = (engine.clone(), stop.clone());
        let thread = std::thread::Builder::new()
            .name("fx-epoch-ticker".into())
            .spawn(move || tick_epochs(&engine, tick, &stopped))
            .map_err(|e| fx_core::Error::internal("starting the epoch ticker").with_source(e))?;
        Ok(Ticker {
            stop,
            thread: Some(thread),
        })
    }
}

impl Drop for Ticker {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(thread) = self.thread.take() {
            thread.thread().unpark();
            if thread.join().is_err() {
                tracing::warn!("the epoch ticker thread panicked");
            }
        }
    }
}

/// Advances the epoch every `tick` until `stop`, parked in between (unparked to stop). Ticks
/// are due at fixed points in time from the start, so that a late wake-up (a busy machine) is
/// caught up rather than accumulated and the epoch keeps pace with the wall clock.
fn tick_epochs(engine: &Engine, tick: Duration, stop: &AtomicBool) {
    let start = Instant::now();
    let mut ticks: u128 = 0;
    loop {
        ticks += 1;
        let offset = u64::try_from(tick.as_nanos().saturating_mul(ticks)).unwrap_or(u64::MAX);
        let due = start + Duration::from_nanos(offset);
        // A park can end early (an unpark, or spuriously): check again until the tick is due.
        loop {
            if stop.load(Ordering::Acquire) {
                return;
            }
            let now = Instant::now();
            if now >= due {
                break;
            }
            std::thread::park_timeout(due - now);
        }
        engine.increment_epoch();
    }
}
