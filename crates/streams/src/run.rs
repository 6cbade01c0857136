//! The loop of one stream, whatever the broker: read while fewer than `max_in_flight`
//! messages are unfinished, infer, write answers in input order, and commit each input only
//! after its answer (or dead letter) is acknowledged. Commits so never run ahead of outputs,
//! and a crash at any point redelivers rather than loses.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use futures_util::stream::FuturesOrdered;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::message::{Destination, Handler, Incoming, Outgoing};
use crate::stats::Stats;

/// A broker connection as the loop needs it.
pub trait Source: Sync {
    /// What commits an input (Kafka partition and offset, a JetStream message to ack).
    type Position: Send;

    /// The next input. An error means the broker is unreachable or refused; the loop pauses
    /// and asks again.
    fn next(&self) -> impl Future<Output = Result<(Incoming, Self::Position), String>> + Send;

    /// Writes one message, resolving when the broker has acknowledged it. Called in input
    /// order; the write is queued in that order before the returned future first waits.
    fn produce(&self, out: &Outgoing) -> impl Future<Output = Result<(), String>> + Send;

    /// `position`'s answer is acknowledged: commit it (batched by the client or not).
    fn commit(&self, position: Self::Position) -> impl Future<Output = ()> + Send;

    /// Every second: refresh lag and offsets.
    fn tick(&self) {}

    /// After the last commit, before exit: flush commits.
    fn finish(&self) -> impl Future<Output = ()> + Send;
}

/// Runs until `stop` turns true, then drains (at most `drain` long) and returns.
pub async fn run<S: Source>(
    source: &S,
    handler: &Handler,
    max_in_flight: usize,
    drain: Duration,
    mut stop: watch::Receiver<bool>,
) {
    let stats = &handler.stats;
    let mut handling = FuturesOrdered::new();
    let mut delivering = FuturesOrdered::new();
    let mut ticks = tokio::time::interval(Duration::from_secs(1));
    ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut drain_until: Option<Instant> = None;
    let mut paused_until: Option<Instant> = None;
    let mut pause = Duration::from_millis(100);
    stats.set_state("running");
    loop {
        let unfinished = handling.len() + delivering.len();
        stats.in_flight.set(unfinished as i64);
        if drain_until.is_some() && unfinished == 0 {
            break;
        }
        let can_read = unfinished < max_in_flight
            && drain_until.is_none()
            && paused_until.is_none_or(|t| Instant::now() >= t);
        tokio::select! {
            biased;
            () = stopped(&mut stop), if drain_until.is_none() => {
                stats.set_state("draining");
                tracing::info!(stream = %stats.name, in_flight = unfinished, "stopping: draining in-flight messages");
                drain_until = Some(Instant::now() + drain);
            }
            Some((destination, position)) = delivering.next() => {
                match destination {
                    Destination::Output => stats.produced.inc(),
                    Destination::DeadLetter => stats.dead_lettered.inc(),
                }
                source.commit(position).await;
                stats.committed.inc();
            }
            Some((out, position)) = handling.next() => {
                let out: Outgoing = out;
                delivering.push_back(deliver(source, out, position, Arc::clone(stats)));
            }
            next = source.next(), if can_read => match next {
                Ok((msg, position)) => {
                    stats.consumed.inc();
                    if paused_until.take().is_some() || stats.state() != "running" {
                        stats.set_state("running");
                        pause = Duration::from_millis(100);
                    }
                    handling.push_back(async move { (handler.handle(msg).await, position) });
                }
                Err(e) => {
                    tracing::warn!(stream = %stats.name, "broker: {e}; retrying in {pause:?}");
                    stats.error(format!("broker: {e}"));
                    stats.set_state("paused");
                    paused_until = Some(Instant::now() + pause);
                    pause = (pause * 2).min(Duration::from_secs(5));
                }
            },
            () = wake(paused_until), if paused_until.is_some() && drain_until.is_none() => {}
            _ = ticks.tick() => {
                source.tick();
                if drain_until.is_some_and(|t| Instant::now() >= t) {
                    tracing::warn!(
                        stream = %stats.name,
                        left = handling.len() + delivering.len(),
                        "drain time is up: the unfinished messages are not committed and will be redelivered"
                    );
                    break;
                }
            }
        }
    }
    source.finish().await;
    stats.in_flight.set(0);
    stats.set_state("stopped");
}

/// Resolves once `stop` is true (or its sender is gone).
pub async fn stopped(stop: &mut watch::Receiver<bool>) {
    let _ = stop.wait_for(|s| *s).await;
}

async fn wake(at: Option<Instant>) {
    if let Some(at) = at {
        tokio::time::sleep_until(at).await;
    }
}

/// Writes `out` until the broker acknowledges it; a failure is retried (and counted), never
/// skipped: skipping would commit an input whose answer is lost.
async fn deliver<S: Source>(
    source: &S,
    out: Outgoing,
    position: S::Position,
    stats: Arc<Stats>,
) -> (Destination, S::Position) {
    let mut backoff = Duration::from_millis(50);
    loop {
        match source.produce(&out).await {
            Ok(()) => return (out.to, position),
            Err(e) => {
                tracing::warn!(stream = %stats.name, "cannot write an answer: {e}; retrying in {backoff:?}");
                stats.error(format!("producing: {e}"));
                stats.retried.inc();
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(Duration::from_secs(5));
            }
        }
    }
}
