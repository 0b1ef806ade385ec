//! Cloud emulation for the in-process S3 server: what a real object store adds to every
//! request — first-byte latency with jitter, a bandwidth cap per connection, throttling
//! errors — done in user space, since the kernel here shapes no traffic.
//!
//! The defaults of [`CloudEmulation::s3_standard`] come from published measurements:
//! - **first-byte latency 100–200 ms**: Amazon S3's performance guide ("Performance
//!   design patterns for Amazon S3", latency-sensitive applications) gives "small object
//!   latencies (and first-byte-out latencies for larger objects) of roughly 100–200
//!   milliseconds": 100 ms plus up to 100 ms of uniform jitter;
//! - **85 MB/s per connection**: the same guide ("Performance guidelines for Amazon S3",
//!   horizontal scaling) advises one concurrent request for each 85–90 MB/s of desired
//!   throughput, and J. Snyder's "Observations about S3" (2023) measured no single
//!   operation faster than about 100 MB/s;
//! - **no throttling errors**: S3 answers `503 SlowDown` above sustained rates of 3,500
//!   writes or 5,500 reads per second per prefix (same guide), far above what one
//!   benchmarking machine sends. Set `error_rate` to study retries.

use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// What the emulated object store adds to each request and connection.
#[derive(Debug, Clone, PartialEq)]
pub struct CloudEmulation {
    /// Waited before each request is served.
    pub first_byte_latency: Duration,
    /// Extra wait drawn uniformly from `0..jitter` for each request.
    pub jitter: Duration,
    /// Bytes per second each connection carries at most, in each direction; `None` for
    /// no cap.
    pub connection_bytes_per_sec: Option<u64>,
    /// Share of requests refused with `503 SlowDown`, in `0.0..=1.0`.
    pub error_rate: f64,
    /// Seed of the jitter and error draws, so two runs draw alike.
    pub seed: u64,
}

impl CloudEmulation {
    /// Nothing added: the server as fast as this machine is.
    pub fn none() -> Self {
        Self {
            first_byte_latency: Duration::ZERO,
            jitter: Duration::ZERO,
            connection_bytes_per_sec: None,
            error_rate: 0.0,
            seed: 0,
        }
    }

    /// Amazon S3 Standard in the same region, from the figures in the module docs.
    pub fn s3_standard() -> Self {
        Self {
            first_byte_latency: Duration::from_millis(100),
            jitter: Duration::from_millis(100),
            connection_bytes_per_sec: Some(85_000_000),
            error_rate: 0.0,
            seed: 0,
        }
    }

    /// Whether it adds anything at all.
    pub fn is_none(&self) -> bool {
        self.first_byte_latency.is_zero()
            && self.jitter.is_zero()
            && self.connection_bytes_per_sec.is_none()
            && self.error_rate == 0.0
    }
}

/// One request's draw: how long to wait, and whether to refuse it.
pub(crate) fn draw(emulation: &CloudEmulation, rng: &mut fastrand::Rng) -> (Duration, bool) {
    let jitter = emulation.jitter.mul_f64(rng.f64());
    let refuse = emulation.error_rate > 0.0 && rng.f64() < emulation.error_rate;
    (emulation.first_byte_latency + jitter, refuse)
}

/// A server connection as the emulation and the fault injection shape it: capped in
/// bandwidth each way, and cut (failing both ways) once it has read `budget` bytes.
pub(crate) struct Link {
    stream: tokio::net::TcpStream,
    budget: u64,
    read: Option<Pace>,
    write: Option<Pace>,
}

impl Link {
    pub(crate) fn new(
        stream: tokio::net::TcpStream,
        budget: Option<u64>,
        bytes_per_sec: Option<u64>,
    ) -> Self {
        Self {
            stream,
            budget: budget.unwrap_or(u64::MAX),
            read: bytes_per_sec.map(Pace::new),
            write: bytes_per_sec.map(Pace::new),
        }
    }

    fn cut() -> std::io::Error {
        std::io::ErrorKind::ConnectionReset.into()
    }
}

/// A bandwidth cap on one direction: after `n` bytes, the next transfer waits until
/// `n / rate` has passed. Writes go in slices of 10 ms worth, so a large buffer cannot
/// pass as one burst; reads are charged after the fact, one socket read at a time.
struct Pace {
    nanos_per_byte: f64,
    slice: usize,
    free_at: Instant,
    sleep: Pin<Box<Sleep>>,
}

impl Pace {
    fn new(bytes_per_sec: u64) -> Self {
        let now = Instant::now();
        Self {
            nanos_per_byte: 1e9 / bytes_per_sec.max(1) as f64,
            slice: (bytes_per_sec / 100).max(1460) as usize,
            free_at: now,
            sleep: Box::pin(tokio::time::sleep_until(now)),
        }
    }

    /// Ready once the previous transfers' time has passed.
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<()> {
        if Instant::now() >= self.free_at {
            return Poll::Ready(());
        }
        self.sleep.as_mut().reset(self.free_at);
        self.sleep.as_mut().poll(cx)
    }

    fn spent(&mut self, bytes: usize) {
        let cost = Duration::from_nanos((bytes as f64 * self.nanos_per_byte) as u64);
        self.free_at = self.free_at.max(Instant::now()) + cost;
    }
}

impl AsyncRead for Link {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.budget == 0 {
            return Poll::Ready(Err(Self::cut()));
        }
        if let Some(pace) = self.read.as_mut() {
            ready!(pace.poll_ready(cx));
        }
        let before = buf.filled().len();
        let result = ready!(Pin::new(&mut self.stream).poll_read(cx, buf));
        let read = buf.filled().len() - before;
        self.budget = self.budget.saturating_sub(read as u64);
        if let Some(pace) = self.read.as_mut() {
            pace.spent(read);
        }
        Poll::Ready(result)
    }
}

impl AsyncWrite for Link {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        // Nothing goes back on a connection that was cut: not even an error response.
        if self.budget == 0 {
            return Poll::Ready(Err(Self::cut()));
        }
        let mut buf = buf;
        if let Some(pace) = self.write.as_mut() {
            ready!(pace.poll_ready(cx));
            buf = &buf[..buf.len().min(pace.slice)];
        }
        let result = ready!(Pin::new(&mut self.stream).poll_write(cx, buf));
        if let (Ok(written), Some(pace)) = (&result, self.write.as_mut()) {
            pace.spent(*written);
        }
        Poll::Ready(result)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.stream).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_stay_in_range_and_repeat_with_the_seed() {
        let emulation = CloudEmulation {
            error_rate: 0.25,
            ..CloudEmulation::s3_standard()
        };
        let run = |seed| {
            let mut rng = fastrand::Rng::with_seed(seed);
            (0..1000)
                .map(|_| draw(&emulation, &mut rng))
                .collect::<Vec<_>>()
        };
        let draws = run(7);
        assert_eq!(draws, run(7), "same seed, same draws");
        assert!(draws.iter().all(|(wait, _)| {
            *wait >= Duration::from_millis(100) && *wait < Duration::from_millis(200)
        }));
        let refused = draws.iter().filter(|(_, refuse)| *refuse).count();
        assert!((150..350).contains(&refused), "about a quarter: {refused}");
        assert!(CloudEmulation::none().is_none() && !CloudEmulation::s3_standard().is_none());
    }
}
