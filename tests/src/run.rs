//! One browser test's run: it enters the test network namespace (see
//! [`crate::netns`]) and prints its steps with the time since it began.

use std::time::Instant;

/// A test run inside the network namespace.
pub struct Run {
    started: Instant,
}

impl Run {
    /// Prints `what` with the seconds since the run began.
    pub fn step(&self, what: &str) {
        println!("[{:>6.1} s] {what}", self.started.elapsed().as_secs_f64());
    }
}

/// The run of `test`, or `None` in the process that only re-ran the test
/// inside the namespace (it has nothing more to do).
pub fn start(test: &str) -> Option<Run> {
    crate::netns::enter_or_reexec(test).then(|| Run {
        started: Instant::now(),
    })
}
