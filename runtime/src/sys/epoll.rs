//! epoll(7): `pol run` sleeps until a ring buffer has records or a signal arrives,
//! instead of waking every few milliseconds to look.

use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use super::{owned_fd, SysError};

/// An epoll instance; closing it (drop) forgets every fd added.
#[derive(Debug)]
pub struct Epoll(OwnedFd);

fn errno() -> i32 {
    std::io::Error::last_os_error()
        .raw_os_error()
        .unwrap_or(libc::EINVAL)
}

impl Epoll {
    pub fn new() -> Result<Epoll, SysError> {
        // SAFETY: epoll_create1 takes a flag and returns a new fd or -1.
        let fd = unsafe { libc::epoll_create1(libc::EPOLL_CLOEXEC) };
        if fd < 0 {
            return Err(SysError::syscall("epoll_create1", errno()));
        }
        Ok(Epoll(owned_fd(i64::from(fd))?))
    }

    /// Watches `fd` for input; [`Epoll::wait`] returns `token` when it has some.
    pub fn add(&self, fd: BorrowedFd<'_>, token: u64) -> Result<(), SysError> {
        let mut ev = libc::epoll_event {
            events: libc::EPOLLIN as u32,
            u64: token,
        };
        // SAFETY: both fds are open (borrowed for the call); `ev` is a valid epoll_event.
        let r = unsafe {
            libc::epoll_ctl(
                self.0.as_raw_fd(),
                libc::EPOLL_CTL_ADD,
                fd.as_raw_fd(),
                &mut ev,
            )
        };
        if r < 0 {
            return Err(SysError::syscall("epoll_ctl", errno()));
        }
        Ok(())
    }

    /// Waits up to `timeout` (`None`: until something happens) and returns the tokens of
    /// the fds with input: none when the time ran out or a signal interrupted the wait.
    pub fn wait(&self, timeout: Option<Duration>) -> Result<Vec<u64>, SysError> {
        let ms = timeout.map_or(-1, |t| {
            // Round up, so a wait for 0.4 ms does not spin at 0 ms.
            i32::try_from(t.as_micros().div_ceil(1000)).unwrap_or(i32::MAX)
        });
        let mut evs = [libc::epoll_event { events: 0, u64: 0 }; 8];
        // SAFETY: `evs` has room for the 8 events the call is told it may write.
        let n =
            unsafe { libc::epoll_wait(self.0.as_raw_fd(), evs.as_mut_ptr(), evs.len() as i32, ms) };
        if n < 0 {
            return match errno() {
                libc::EINTR => Ok(Vec::new()),
                e => Err(SysError::syscall("epoll_wait", e)),
            };
        }
        Ok(evs.iter().take(n as usize).map(|e| e.u64).collect())
    }
}
