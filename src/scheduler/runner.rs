//! Runs jobs at their schedule's ticks: one task per job, so a slow job never delays
//! another; a shared semaphore bounds how many run at once; a job still running (or a
//! process that was stopped) when later ticks pass skips them — they are counted as
//! missed, never replayed in a burst — and the next run is for the latest due tick.
//!
//! Time comes from a [`Clock`], so tests drive the runner with `tokio::time::pause`.

use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use futures_util::future::BoxFuture;
use tokio_util::sync::CancellationToken;

use super::schedule::Schedule;
use crate::telemetry::RunnerMetrics;

/// Wall-clock time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The system clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}

/// A clock that follows tokio's (pausable) time from a starting instant: for tests.
pub struct TokioClock {
    start: DateTime<Utc>,
    start_instant: tokio::time::Instant,
}

impl TokioClock {
    pub fn starting_at(start: DateTime<Utc>) -> TokioClock {
        TokioClock {
            start,
            start_instant: tokio::time::Instant::now(),
        }
    }
}

impl Clock for TokioClock {
    fn now(&self) -> DateTime<Utc> {
        let elapsed = tokio::time::Instant::now() - self.start_instant;
        self.start + chrono::Duration::from_std(elapsed).unwrap_or_default()
    }
}

/// What runs at a tick.
pub type Job = Arc<dyn Fn(DateTime<Utc>) -> BoxFuture<'static, ()> + Send + Sync>;

pub struct Runner {
    clock: Arc<dyn Clock>,
    slots: Arc<tokio::sync::Semaphore>,
    pub metrics: Arc<RunnerMetrics>,
}

impl Runner {
    /// A runner that lets `max_concurrent` jobs run at once.
    pub fn new(clock: Arc<dyn Clock>, max_concurrent: usize) -> Runner {
        Runner::with_metrics(clock, max_concurrent, Arc::default())
    }

    /// The same, counting into `metrics` (shared with `/metrics`).
    pub fn with_metrics(
        clock: Arc<dyn Clock>,
        max_concurrent: usize,
        metrics: Arc<RunnerMetrics>,
    ) -> Runner {
        Runner {
            clock,
            slots: Arc::new(tokio::sync::Semaphore::new(max_concurrent.max(1))),
            metrics,
        }
    }

    /// Runs `job` at every tick of `schedule` after now, until `cancel`.
    pub fn spawn(
        &self,
        name: String,
        schedule: Schedule,
        job: Job,
        cancel: CancellationToken,
    ) -> tokio::task::JoinHandle<()> {
        let (clock, slots, metrics) = (
            Arc::clone(&self.clock),
            Arc::clone(&self.slots),
            Arc::clone(&self.metrics),
        );
        let span = tracing::info_span!("schedule", job = %name);
        tokio::spawn(tracing::Instrument::instrument(
            async move {
                let mut previous = clock.now();
                loop {
                    let Some(tick) = schedule.next_after(previous) else {
                        tracing::info!("schedule has no more ticks");
                        return;
                    };
                    let wait = (tick - clock.now()).to_std().unwrap_or(Duration::ZERO);
                    tokio::select! {
                        () = cancel.cancelled() => return,
                        () = tokio::time::sleep(wait) => {}
                    }
                    // late (a long run, a stopped process): run the latest due tick once
                    let now = clock.now();
                    let mut due = tick;
                    let mut missed = 0;
                    while let Some(next) = schedule.next_after(due).filter(|next| *next <= now) {
                        due = next;
                        missed += 1;
                    }
                    if missed > 0 {
                        metrics.missed_ticks.add(missed);
                        tracing::warn!(missed, tick = %due, "ticks missed while the previous run or the process was late; running the latest once");
                    }
                    let permit = tokio::select! {
                        () = cancel.cancelled() => return,
                        permit = slots.clone().acquire_owned() => permit.expect("the semaphore is never closed"),
                    };
                    metrics
                        .queue_delay
                        .observe((clock.now() - due).to_std().unwrap_or(Duration::ZERO));
                    let started = tokio::time::Instant::now();
                    job(due).await;
                    metrics.run_seconds.observe(started.elapsed());
                    metrics.runs.add(1);
                    drop(permit);
                    previous = due;
                }
            },
            span,
        ))
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Mutex;

    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text)
            .expect("time")
            .with_timezone(&Utc)
    }

    /// A job that records its ticks (as `HH:MM:SS`) and takes `duration`.
    fn recording(duration: Duration) -> (Job, Arc<Mutex<Vec<String>>>) {
        let ticks = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&ticks);
        let job: Job = Arc::new(move |tick: DateTime<Utc>| {
            let sink = Arc::clone(&sink);
            Box::pin(async move {
                sink.lock()
                    .expect("lock")
                    .push(tick.format("%H:%M:%S").to_string());
                tokio::time::sleep(duration).await;
            })
        });
        (job, ticks)
    }

    #[tokio::test(start_paused = true)]
    async fn ticks_run_at_the_cron_time_and_a_slow_job_delays_no_other() {
        let clock = Arc::new(TokioClock::starting_at(at("2026-11-22T10:00:03Z")));
        let runner = Runner::new(clock.clone(), 4);
        let cancel = CancellationToken::new();
        let every_10s = Schedule::parse("*/10 * * * * *", None).expect("schedule");
        let (fast, fast_ticks) = recording(Duration::from_millis(100));
        let (slow, slow_ticks) = recording(Duration::from_secs(25));
        runner.spawn("fast".into(), every_10s.clone(), fast, cancel.clone());
        runner.spawn("slow".into(), every_10s, slow, cancel.clone());
        tokio::time::sleep(Duration::from_secs(48)).await;
        cancel.cancel();
        assert_eq!(
            *fast_ticks.lock().expect("lock"),
            ["10:00:10", "10:00:20", "10:00:30", "10:00:40", "10:00:50"],
            "every tick, on time, while the slow job runs"
        );
        // the slow job runs 10:00:10 until :35 — :20 and :30 pass meanwhile: the latest,
        // :30, runs once at :35 and :20 is counted missed, not replayed
        assert_eq!(*slow_ticks.lock().expect("lock"), ["10:00:10", "10:00:30"]);
        assert_eq!(runner.metrics.missed_ticks.get(), 1, "the :20 tick");
        assert_eq!(runner.metrics.runs.get(), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn a_run_longer_than_many_periods_skips_to_the_latest_tick_once() {
        let clock = Arc::new(TokioClock::starting_at(at("2026-11-22T10:00:00Z")));
        let runner = Runner::new(clock, 1);
        let cancel = CancellationToken::new();
        let (job, ticks) = recording(Duration::from_secs(35));
        runner.spawn(
            "stalled".into(),
            Schedule::parse("*/5 * * * * *", None).expect("schedule"),
            job,
            cancel.clone(),
        );
        tokio::time::sleep(Duration::from_secs(44)).await;
        cancel.cancel();
        // 10:00:05 runs until :40; :10 … :40 were due meanwhile: :40 runs, six are missed
        assert_eq!(*ticks.lock().expect("lock"), ["10:00:05", "10:00:40"]);
        assert_eq!(runner.metrics.missed_ticks.get(), 6);
    }

    #[tokio::test(start_paused = true)]
    async fn the_slot_limit_bounds_concurrent_runs() {
        let clock = Arc::new(TokioClock::starting_at(at("2026-11-22T10:00:00Z")));
        let runner = Runner::new(clock, 1);
        let cancel = CancellationToken::new();
        let running = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        let most = Arc::new(std::sync::atomic::AtomicUsize::new(0));
        for name in ["a", "b", "c"] {
            let (running, most) = (Arc::clone(&running), Arc::clone(&most));
            let job: Job = Arc::new(move |_| {
                let (running, most) = (Arc::clone(&running), Arc::clone(&most));
                Box::pin(async move {
                    use std::sync::atomic::Ordering;
                    let now = running.fetch_add(1, Ordering::SeqCst) + 1;
                    most.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(500)).await;
                    running.fetch_sub(1, Ordering::SeqCst);
                })
            });
            runner.spawn(
                name.into(),
                Schedule::parse("*/10 * * * * *", None).expect("schedule"),
                job,
                cancel.clone(),
            );
        }
        tokio::time::sleep(Duration::from_secs(25)).await;
        cancel.cancel();
        assert_eq!(most.load(std::sync::atomic::Ordering::SeqCst), 1);
        assert_eq!(runner.metrics.runs.get(), 6, "three jobs, two ticks each");
    }
}
