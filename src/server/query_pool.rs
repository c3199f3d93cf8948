//! Where the API's searches and PromQL queries run: a fixed set of threads with a bounded
//! queue, at a lower scheduling priority than everything else.
//!
//! Admission, like Elasticsearch's `search` thread pool and Prometheus'
//! `--query.max-concurrency`: at most `threads` queries run at once, at most `queue` more
//! wait, and one more is refused at once ([`PoolError::Busy`]: 429 on the ES API, 503 on
//! the Prometheus API) instead of joining a queue that grows without bound.
//!
//! Priority: the pool's threads lower their own nice value ([`QUERY_NICE`]), so when the
//! box is saturated by queries the kernel gives the CPU first to what must not wait —
//! rule evaluation (tokio's blocking pool), ingest acknowledgments (the write-ahead log
//! and indexing threads), notifications.
//!
//! A query does not outlive its client: one whose client went away while it was queued
//! is not started, and a running one gets a [`CancellationToken`] that is cancelled when
//! the request is dropped (hyper drops it when the client closes the connection); the
//! searches and the PromQL evaluator look at it where they look at their deadline.
//!
//! A query that panics fails alone ([`PoolError::Panicked`]); the thread goes on.

use std::sync::mpsc::{Receiver, SyncSender, TrySendError};
use std::sync::{Arc, Mutex};

use tokio_util::sync::CancellationToken;

/// The nice value added to the pool's threads (0 is normal, 19 the lowest priority).
pub const QUERY_NICE: i32 = 10;

type Job = Box<dyn FnOnce() + Send>;

/// Why a query did not run to its end.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum PoolError {
    #[error(
        "too many queries at once: {running} running and {queued} queued (the `{pool}` pool's limits); retry later"
    )]
    Busy {
        pool: &'static str,
        running: usize,
        queued: usize,
    },
    #[error("the query panicked (a bug; please report it): {0}")]
    Panicked(String),
    #[error("the query pool is stopping")]
    Stopped,
}

/// A fixed pool of low-priority threads with a bounded queue.
pub struct QueryPool {
    name: &'static str,
    threads: usize,
    queue: usize,
    sender: SyncSender<Job>,
    telemetry: Arc<crate::telemetry::Telemetry>,
    /// Queries of this pool running now, and refused because it was full (a tenant's
    /// pools are its own, so these are the tenant's).
    running: Arc<std::sync::atomic::AtomicUsize>,
    refused: crate::telemetry::Counter,
}

impl QueryPool {
    /// Starts `threads` threads (named `NAME-N`, [`crate::THREAD_STACK_BYTES`] of stack)
    /// sharing a queue of `queue` jobs. Threads that cannot be started are logged; at
    /// least one must start.
    pub fn start(
        name: &'static str,
        threads: usize,
        queue: usize,
        telemetry: Arc<crate::telemetry::Telemetry>,
    ) -> std::io::Result<QueryPool> {
        let threads = threads.max(1);
        // the channel holds the queued jobs; a job being run is out of it
        let (sender, receiver) = std::sync::mpsc::sync_channel::<Job>(queue);
        let receiver = Arc::new(Mutex::new(receiver));
        for number in 0..threads {
            let receiver = Arc::clone(&receiver);
            std::thread::Builder::new()
                .name(format!("{name}-{number}"))
                .stack_size(crate::THREAD_STACK_BYTES)
                .spawn(move || work(&receiver))?;
        }
        Ok(QueryPool {
            name,
            threads,
            queue,
            sender,
            telemetry,
            running: Arc::default(),
            refused: crate::telemetry::Counter::default(),
        })
    }

    /// Queries running now.
    pub fn running(&self) -> usize {
        self.running.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Queries refused because the pool was full, since the start.
    pub fn refused(&self) -> u64 {
        self.refused.get()
    }

    /// Runs `query` on the pool and waits for its result, or refuses it at once when
    /// the pool is full. The token `query` gets is cancelled if this future is dropped
    /// before the result arrives (the client left): a long query should look at it.
    pub async fn run<T: Send + 'static>(
        &self,
        query: impl FnOnce(&CancellationToken) -> T + Send + 'static,
    ) -> Result<T, PoolError> {
        let (reply, result) = tokio::sync::oneshot::channel();
        let cancel = CancellationToken::new();
        let cancel_on_drop = cancel.clone().drop_guard();
        let (telemetry, name) = (Arc::clone(&self.telemetry), self.name);
        let running = Arc::clone(&self.running);
        let job: Job = Box::new(move || {
            use std::sync::atomic::Ordering::Relaxed;
            if reply.is_closed() {
                return; // the client went away while this waited
            }
            telemetry.queries_running.add(name, 1);
            running.fetch_add(1, Relaxed);
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| query(&cancel)))
                .map_err(|panic| PoolError::Panicked(crate::panic::message(&*panic).to_string()));
            running.fetch_sub(1, Relaxed);
            telemetry.queries_running.add(name, -1);
            if cancel.is_cancelled() {
                telemetry.queries_cancelled.add(name, 1);
            }
            let _ = reply.send(outcome);
        });
        match self.sender.try_send(job) {
            Ok(()) => {}
            Err(TrySendError::Full(_)) => {
                self.refused.add(1);
                return Err(PoolError::Busy {
                    pool: self.name,
                    running: self.threads,
                    queued: self.queue,
                });
            }
            Err(TrySendError::Disconnected(_)) => return Err(PoolError::Stopped),
        }
        let outcome = result.await.map_err(|_| PoolError::Stopped)?;
        cancel_on_drop.disarm();
        outcome
    }
}

fn work(receiver: &Mutex<Receiver<Job>>) {
    lower_priority();
    loop {
        let job = {
            let receiver = receiver
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            receiver.recv()
        };
        match job {
            Ok(job) => job(),
            Err(_) => return, // the pool was dropped
        }
    }
}

/// Lowers this thread's scheduling priority (on Linux the nice value is per thread).
fn lower_priority() {
    #[cfg(target_os = "linux")]
    {
        let thread = rustix::thread::gettid();
        let current = rustix::process::getpriority_process(Some(thread)).unwrap_or(0);
        if let Err(error) = rustix::process::setpriority_process(Some(thread), current + QUERY_NICE)
        {
            tracing::debug!(%error, "cannot lower a query thread's priority");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_full_pool_refuses_at_once_and_a_panic_fails_one_query() {
        let pool = QueryPool::start("test-query", 1, 1, Arc::default()).expect("pool");
        let (release, gate) = std::sync::mpsc::channel::<()>();
        let gate = Arc::new(Mutex::new(gate));
        let blocking = |gate: Arc<Mutex<Receiver<()>>>| {
            move |_: &CancellationToken| {
                let _ = gate.lock().expect("gate").recv();
                1
            }
        };
        let pool = Arc::new(pool);
        let running = tokio::spawn({
            let (pool, gate) = (Arc::clone(&pool), Arc::clone(&gate));
            async move { pool.run(blocking(gate)).await }
        });
        // wait until the first one runs (left the queue), then fill the queue
        let queued = loop {
            let (pool, gate) = (Arc::clone(&pool), Arc::clone(&gate));
            let attempt = tokio::spawn(async move { pool.run(blocking(gate)).await });
            tokio::task::yield_now().await;
            tokio::time::sleep(std::time::Duration::from_millis(5)).await;
            if !attempt.is_finished() {
                break attempt;
            }
        };
        let refused = pool.run(|_| 2).await;
        assert!(
            matches!(
                refused,
                Err(PoolError::Busy {
                    running: 1,
                    queued: 1,
                    ..
                })
            ),
            "{refused:?}"
        );
        release.send(()).expect("release");
        release.send(()).expect("release");
        assert_eq!(running.await.expect("join"), Ok(1));
        assert_eq!(queued.await.expect("join"), Ok(1));
        let panicked = pool.run(|_| -> u32 { panic!("on purpose") }).await;
        assert_eq!(panicked, Err(PoolError::Panicked("on purpose".into())));
        assert_eq!(pool.run(|_| 3).await, Ok(3), "the thread survives");
    }

    #[tokio::test]
    async fn a_running_query_is_cancelled_when_its_caller_goes_away() {
        let pool = Arc::new(QueryPool::start("test-cancel", 1, 1, Arc::default()).expect("pool"));
        let (started, running) = tokio::sync::oneshot::channel::<()>();
        let (seen, cancelled) = std::sync::mpsc::channel::<bool>();
        let caller = tokio::spawn({
            let pool = Arc::clone(&pool);
            async move {
                pool.run(move |cancel| {
                    let _ = started.send(());
                    // a long query looking at its token, bounded so a bug fails the test
                    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
                    while !cancel.is_cancelled() && std::time::Instant::now() < deadline {
                        std::thread::sleep(std::time::Duration::from_millis(1));
                    }
                    let _ = seen.send(cancel.is_cancelled());
                })
                .await
            }
        });
        running.await.expect("the query started");
        caller.abort(); // the client left: its request future is dropped
        let was_cancelled = tokio::task::spawn_blocking(move || cancelled.recv())
            .await
            .expect("join")
            .expect("the query ended");
        assert!(was_cancelled, "the running query saw its cancellation");
        // a query that completes is not cancelled afterwards
        let token = pool.run(|cancel| cancel.clone()).await.expect("ran");
        assert!(!token.is_cancelled());
    }
}
