//! A child process that cannot outlive its test: killed and reaped when the guard drops, so a
//! failing assertion never leaves a server running.

use std::{
    process::{Child, Command, ExitStatus},
    time::Duration,
};

use nix::{sys::signal::Signal, unistd::Pid};

pub struct ProcessGuard {
    child: Option<Child>,
}

impl ProcessGuard {
    pub fn new(child: Child) -> ProcessGuard {
        ProcessGuard { child: Some(child) }
    }

    /// Starts `cmd`; panics naming the program (`name`) when it cannot be started.
    pub fn spawn(name: &str, cmd: &mut Command) -> ProcessGuard {
        let child = cmd
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
        ProcessGuard::new(child)
    }

    /// Blocks until the process exits, and reaps it; `None` if it was reaped already.
    pub fn wait(&mut self) -> Option<ExitStatus> {
        let status = self.child.as_mut()?.wait().ok();
        self.child = None;
        status
    }

    /// True once the process was reaped (it exited and was waited for, or was killed).
    pub fn reaped(&self) -> bool {
        self.child.is_none()
    }

    /// Sends `signal` (a no-op once the process was reaped).
    pub fn signal(&self, signal: Signal) {
        if let Some(pid) = self.child.as_ref().and_then(|c| i32::try_from(c.id()).ok()) {
            let _ = nix::sys::signal::kill(Pid::from_raw(pid), signal);
        }
    }

    /// Waits (without blocking the runtime: clients in the same test keep answering) until the
    /// process exits; `None` if it did not within `timeout`, and then it is killed.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let child = self.child.as_mut()?;
            if let Ok(Some(status)) = child.try_wait() {
                self.child = None;
                return Some(status);
            }
            if tokio::time::Instant::now() >= deadline {
                self.kill();
                return None;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// SIGKILL, and reap.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

impl Drop for ProcessGuard {
    fn drop(&mut self) {
        self.kill();
    }
}
