//! What every `pol run` that prints events shares (probes, security rules, flow events):
//! the event ring buffer with its lost-record counter, and the wait until Ctrl-C,
//! SIGTERM or a deadline, blocked in epoll on the ring buffer's fd and a signal pipe, so
//! an idle run never wakes and a record is printed as soon as the kernel submits it.

use std::io::Read;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use aya::maps::{Map, MapData, RingBuf};

use super::load::ProbeObject;
use crate::sys::epoll::Epoll;
use crate::sys::{map_info, map_lookup, value_buf_len, SysError};

/// The signals that end a run (after detaching): the ones that end a process by default
/// and can be caught. SIGPIPE too: stdout going away ends the run cleanly.
pub const STOP_SIGNALS: [i32; 5] = [
    libc::SIGINT,
    libc::SIGTERM,
    libc::SIGHUP,
    libc::SIGQUIT,
    libc::SIGPIPE,
];

/// Why the ring buffer or the wait could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum WatchError {
    #[error("internal error: map `{0}` is not in the object")]
    NoMap(String),
    #[error("ring buffer `{map}`: {why}")]
    Ring { map: String, why: String },
    #[error("cannot catch signals: {0}")]
    Signals(std::io::Error),
    #[error(transparent)]
    Sys(#[from] SysError),
}

/// The ring buffer records come through, and the per-CPU count of those it had no room
/// for (both made by `pol_compiler::probe::ring`).
pub struct EventRing {
    ring: RingBuf<MapData>,
    /// The ring buffer's fd again, for epoll (the reader owns the first).
    fd: OwnedFd,
    lost: OwnedFd,
    /// The lost total last returned by [`EventRing::lost_grew`].
    reported: u64,
}

impl EventRing {
    /// The ring buffer `ring` and lost counter `lost` of a loaded object.
    pub fn open(obj: &ProbeObject, ring: &str, lost: &str) -> Result<EventRing, WatchError> {
        let dup = |name: &str| -> Result<OwnedFd, WatchError> {
            let fd = obj
                .map_fd(name)
                .map_err(|_| WatchError::NoMap(name.to_string()))?;
            fd.try_clone_to_owned().map_err(|e| WatchError::Ring {
                map: name.to_string(),
                why: format!("cannot duplicate its fd: {e}"),
            })
        };
        let bad = |why: String| WatchError::Ring {
            map: ring.to_string(),
            why,
        };
        // aya's reader (memory-mapped, as libbpf's) over the map pol created.
        let data = MapData::from_fd(dup(ring)?).map_err(|e| bad(e.to_string()))?;
        let reader = RingBuf::try_from(Map::RingBuf(data)).map_err(|e| bad(e.to_string()))?;
        Ok(EventRing {
            ring: reader,
            fd: dup(ring)?,
            lost: dup(lost)?,
            reported: 0,
        })
    }

    /// Hands every record waiting in the buffer to `each`, oldest first; returns how many.
    pub fn drain(&mut self, mut each: impl FnMut(&[u8])) -> usize {
        let mut n = 0;
        while let Some(item) = self.ring.next() {
            each(&item);
            n += 1;
        }
        n
    }

    /// Records lost so far: the counter summed over the CPUs.
    pub fn lost(&self) -> u64 {
        let fd = self.lost.as_fd();
        map_info(fd)
            .and_then(|info| value_buf_len(&info))
            .and_then(|len| map_lookup(fd, &0u32.to_le_bytes(), len))
            .ok()
            .flatten()
            .map_or(0, |v| {
                v.chunks(8)
                    .map(|c| u64::from_le_bytes(c.try_into().unwrap_or([0; 8])))
                    .fold(0u64, u64::wrapping_add)
            })
    }

    /// The lost total when it grew since the last call (to be reported), else `None`.
    pub fn lost_grew(&mut self) -> Option<u64> {
        let total = self.lost();
        (total > self.reported).then(|| {
            self.reported = total;
            total
        })
    }

    fn poll_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

const TOKEN_SIGNAL: u64 = 0;
const TOKEN_RING: u64 = 1;

/// The run's wait: a stop signal, the deadline, records in a watched ring buffer, or the
/// caller's next timer, whichever comes first.
pub struct Watch {
    epoll: Epoll,
    stop: Arc<AtomicBool>,
    /// The read end of the pipe the signal handlers write a byte to (no race between
    /// looking at the flag and blocking: the byte wakes the wait).
    signals: UnixStream,
    deadline: Option<Instant>,
}

impl Watch {
    /// Catches [`STOP_SIGNALS`] from now on (a signal during start-up stops the run as
    /// soon as it waits); the run also ends `duration` from now.
    pub fn new(duration: Option<Duration>) -> Result<Watch, WatchError> {
        let stop = Arc::new(AtomicBool::new(false));
        let (rx, tx) = UnixStream::pair().map_err(WatchError::Signals)?;
        tx.set_nonblocking(true).map_err(WatchError::Signals)?;
        rx.set_nonblocking(true).map_err(WatchError::Signals)?;
        for sig in STOP_SIGNALS {
            signal_hook::flag::register(sig, Arc::clone(&stop)).map_err(WatchError::Signals)?;
            let tx = tx.try_clone().map_err(WatchError::Signals)?;
            signal_hook::low_level::pipe::register(sig, tx).map_err(WatchError::Signals)?;
        }
        let epoll = Epoll::new()?;
        epoll.add(rx.as_fd(), TOKEN_SIGNAL)?;
        Ok(Watch {
            epoll,
            stop,
            signals: rx,
            deadline: duration.map(|d| Instant::now() + d),
        })
    }

    /// Wakes [`Watch::wait`] when `ring` has records.
    pub fn watch(&self, ring: &EventRing) -> Result<(), WatchError> {
        Ok(self.epoll.add(ring.poll_fd(), TOKEN_RING)?)
    }

    /// Whether a stop signal came or the deadline passed.
    pub fn stopped(&self) -> bool {
        self.stop.load(Ordering::Relaxed) || self.deadline.is_some_and(|d| Instant::now() >= d)
    }

    /// Blocks until a watched ring buffer has records, `until` passes or the run should
    /// end; false when it should end.
    pub fn wait(&mut self, until: Option<Instant>) -> Result<bool, WatchError> {
        if self.stopped() {
            return Ok(false);
        }
        let end = match (until, self.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let timeout = end.map(|e| e.saturating_duration_since(Instant::now()));
        let ready = self.epoll.wait(timeout)?;
        if ready.contains(&TOKEN_SIGNAL) {
            let mut buf = [0u8; 64];
            while matches!(self.signals.read(&mut buf), Ok(n) if n > 0) {}
        }
        Ok(!self.stopped())
    }
}
