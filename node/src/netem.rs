//! Link shaping for simulations: one-way latency, jitter, loss and bandwidth on
//! every connection a node reads from, and byte counters.
//!
//! Only the simulation (`tests/src/bin/medmesh-sim.rs`) sets
//! [`crate::NodeConfig::shaping`]; a node without it builds exactly the transport
//! it always did. With it, the TCP transport's streams are wrapped in [`Shaped`]
//! below noise and yamux, so everything above (gossipsub, sync, Kademlia, ping)
//! is the real code and sees the shaped link.
//!
//! The model, applied where bytes are read (each node shapes what it receives, so
//! a link's two directions are shaped by the two ends):
//! - latency: bytes become readable `latency + jitter` after they arrived, jitter
//!   uniform in `[0, jitter]`, never before bytes that arrived earlier (a stream
//!   keeps its order, as TCP does);
//! - bandwidth: a chunk of `n` bytes takes `n / bandwidth` after the previous one;
//! - loss, as TCP shows it to the application: a read chunk is lost with
//!   probability `loss` and then comes one retransmission timeout later
//!   (`max(rto_min, 3 x latency)`, `rto_min` Linux's 200 ms on an unscaled
//!   clock), holding back what follows it.
//!
//! A scaled clock ([`crate::NodeConfig::time_dilation`] K) is the caller's to
//! apply here: latency, jitter and `rto_min` K times longer, bandwidth K times
//! lower.

use std::collections::VecDeque;
use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};
use std::time::Duration;

use futures_util::{AsyncRead, AsyncWrite};
use tokio::time::{Instant, Sleep};

/// Bytes held back per connection before the shaper stops reading its socket.
pub const SHAPER_QUEUE_BYTES_MAX: usize = 1024 * 1024;
/// Bytes read from the socket at once.
const READ_CHUNK_BYTES: usize = 16 * 1024;
/// The smallest retransmission timeout (Linux's `TCP_RTO_MIN`).
pub const RTO_MIN_MS: u64 = 200;

/// How a node's inbound links behave.
#[derive(Clone, Copy, Debug)]
pub struct LinkShape {
    /// One-way latency.
    pub latency: Duration,
    /// Extra delay, uniform in `[0, jitter]`.
    pub jitter: Duration,
    /// Probability that a read chunk is lost and retransmitted, in [0, 1].
    pub loss: f64,
    /// Bytes per second; 0 is unlimited.
    pub bandwidth_bytes_per_s: u64,
    /// The smallest retransmission timeout after a loss ([`RTO_MIN_MS`]).
    pub rto_min: Duration,
}

/// A node's shaping and its byte counters (read after shaping, written before).
#[derive(Debug)]
pub struct Shaping {
    pub shape: LinkShape,
    pub bytes_in: AtomicU64,
    pub bytes_out: AtomicU64,
    seed: AtomicU64,
}

impl Shaping {
    pub fn new(shape: LinkShape, seed: u64) -> Arc<Shaping> {
        Arc::new(Shaping {
            shape,
            bytes_in: AtomicU64::new(0),
            bytes_out: AtomicU64::new(0),
            seed: AtomicU64::new(seed),
        })
    }

    fn next_seed(&self) -> u64 {
        self.seed.fetch_add(0x9E37_79B9_7F4A_7C15, Ordering::Relaxed)
    }
}

/// A stream whose reads are shaped by [`Shaping`].
pub struct Shaped<S> {
    inner: S,
    shaping: Arc<Shaping>,
    queue: VecDeque<(Instant, Vec<u8>)>,
    queued_bytes: usize,
    /// Offset into the front chunk already read out.
    front_read: usize,
    last_release: Instant,
    timer: Pin<Box<Sleep>>,
    rng: u64,
    eof: bool,
}

impl<S> Shaped<S> {
    pub fn new(inner: S, shaping: Arc<Shaping>) -> Self {
        let rng = shaping.next_seed() | 1;
        Shaped {
            inner,
            shaping,
            queue: VecDeque::new(),
            queued_bytes: 0,
            front_read: 0,
            last_release: Instant::now(),
            timer: Box::pin(tokio::time::sleep(Duration::ZERO)),
            rng,
            eof: false,
        }
    }

    /// Uniform in [0, 1).
    fn uniform(&mut self) -> f64 {
        self.rng ^= self.rng << 13;
        self.rng ^= self.rng >> 7;
        self.rng ^= self.rng << 17;
        (self.rng >> 11) as f64 / (1u64 << 53) as f64
    }

    fn release_at(&mut self, now: Instant, len: usize) -> Instant {
        let s = self.shaping.shape;
        let jitter = s.jitter.mul_f64(self.uniform());
        let mut at = (now + s.latency + jitter).max(self.last_release);
        if s.bandwidth_bytes_per_s > 0 {
            at += Duration::from_secs_f64(len as f64 / s.bandwidth_bytes_per_s as f64);
        }
        if s.loss > 0.0 && self.uniform() < s.loss {
            let rto = s.rto_min.max(s.latency * 3);
            at += rto;
        }
        self.last_release = at;
        at
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for Shaped<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut [u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        // Take in whatever the socket has, stamped with when it may be read.
        // Read on the stack, then keep each chunk at its size: a chunk held for
        // its latency keeps only its own bytes, not a whole read buffer.
        let mut scratch = [0u8; READ_CHUNK_BYTES];
        while !this.eof && this.queued_bytes < SHAPER_QUEUE_BYTES_MAX {
            match Pin::new(&mut this.inner).poll_read(cx, &mut scratch) {
                Poll::Ready(Ok(0)) => this.eof = true,
                Poll::Ready(Ok(n)) => {
                    let chunk = scratch[..n].to_vec();
                    let at = this.release_at(Instant::now(), n);
                    this.queued_bytes += n;
                    this.queue.push_back((at, chunk));
                }
                Poll::Ready(Err(e)) => {
                    if this.queue.is_empty() {
                        return Poll::Ready(Err(e));
                    }
                    this.eof = true;
                }
                Poll::Pending => break,
            }
        }
        loop {
            let Some((at, chunk)) = this.queue.front() else {
                return if this.eof { Poll::Ready(Ok(0)) } else { Poll::Pending };
            };
            if *at <= Instant::now() {
                let rest = &chunk[this.front_read..];
                let n = rest.len().min(buf.len());
                buf[..n].copy_from_slice(&rest[..n]);
                this.front_read += n;
                if this.front_read == chunk.len() {
                    this.queued_bytes -= chunk.len();
                    this.queue.pop_front();
                    this.front_read = 0;
                }
                this.shaping.bytes_in.fetch_add(n as u64, Ordering::Relaxed);
                return Poll::Ready(Ok(n));
            }
            let at = *at;
            this.timer.as_mut().reset(at);
            if this.timer.as_mut().poll(cx).is_pending() {
                return Poll::Pending;
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for Shaped<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let r = Pin::new(&mut self.inner).poll_write(cx, buf);
        if let Poll::Ready(Ok(n)) = &r {
            self.shaping.bytes_out.fetch_add(*n as u64, Ordering::Relaxed);
        }
        r
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_close(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_close(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_util::AsyncReadExt;

    fn shape(latency_ms: u64, bandwidth_bytes_per_s: u64) -> Arc<Shaping> {
        Shaping::new(
            LinkShape {
                latency: Duration::from_millis(latency_ms),
                jitter: Duration::ZERO,
                loss: 0.0,
                bandwidth_bytes_per_s,
                rto_min: Duration::from_millis(RTO_MIN_MS),
            },
            7,
        )
    }

    #[tokio::test]
    async fn bytes_become_readable_one_latency_after_they_arrived_in_order() {
        let data: Vec<u8> = (0..100_000u32).map(|i| i as u8).collect();
        let shaping = shape(50, 0);
        let mut s = Shaped::new(futures_util::io::Cursor::new(data.clone()), shaping.clone());
        let t0 = Instant::now();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.expect("read");
        assert_eq!(out, data);
        assert!(Instant::now() - t0 >= Duration::from_millis(50));
        assert_eq!(shaping.bytes_in.load(Ordering::Relaxed), data.len() as u64);
    }

    #[tokio::test]
    async fn a_bandwidth_limit_spreads_bytes_over_time() {
        let data = vec![7u8; 64 * 1024];
        let mut s = Shaped::new(futures_util::io::Cursor::new(data), shape(20, 640 * 1024));
        let t0 = Instant::now();
        let mut out = Vec::new();
        s.read_to_end(&mut out).await.expect("read");
        let took = Instant::now() - t0;
        // 64 KiB at 640 KiB/s after 20 ms of latency.
        assert!(took >= Duration::from_millis(120), "{took:?}");
    }
}
