//! CPU time of the Hookline processes, of this benchmark process and of
//! the rest of the machine over one span, so that a reader can see how the cores
//! were shared.

use crate::procfs;
use anyhow::Result;
use serde::Serialize;
use std::time::Instant;

/// CPU counters at one moment, in seconds.
#[derive(Debug, Clone, Copy)]
pub(crate) struct CpuSample {
    at: Instant,
    hookline: f64,
    own: f64,
    backends: f64,
    machine: f64,
}

/// Command names of the PostgreSQL, RabbitMQ (Erlang VM) and Redis server
/// processes, whose CPU time the distributed mode adds to Hookline's own.
const BACKEND_COMMANDS: [&str; 3] = ["postgres", "beam.smp", "redis-server"];

impl CpuSample {
    /// Reads the counters of the Hookline processes `hookline_pids`
    /// (summed), of this process and of the whole machine.
    pub(crate) fn take(hookline_pids: &[u32], clock_ticks: u64) -> Result<Self> {
        let mut hookline = 0.0;
        for pid in hookline_pids {
            hookline += procfs::cpu_seconds(*pid, clock_ticks)?;
        }
        Ok(Self {
            at: Instant::now(),
            hookline,
            own: procfs::cpu_seconds(std::process::id(), clock_ticks)?,
            backends: procfs::cpu_seconds_of_commands(&BACKEND_COMMANDS, clock_ticks)?,
            machine: procfs::machine_busy_seconds(clock_ticks)?,
        })
    }
}

/// CPU time spent between two samples, in seconds.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CpuFigures {
    pub(crate) wall_seconds: f64,
    /// User plus system time of the Hookline processes.
    pub(crate) hookline_seconds: f64,
    /// `hookline_seconds / wall_seconds`: the cores Hookline kept busy.
    pub(crate) hookline_cores: f64,
    /// This process: the event generator and the receiver.
    pub(crate) bench_seconds: f64,
    /// PostgreSQL, RabbitMQ and Redis server processes, busy or not with
    /// this run.
    pub(crate) backend_seconds: f64,
    /// Busy time of every other process on the machine, such as a build
    /// that ran during the benchmark.
    pub(crate) other_seconds: f64,
}

impl CpuFigures {
    pub(crate) fn between(before: &CpuSample, after: &CpuSample) -> Self {
        let wall_seconds = (after.at - before.at).as_secs_f64();
        let hookline_seconds = after.hookline - before.hookline;
        let bench_seconds = after.own - before.own;
        let backend_seconds = (after.backends - before.backends).max(0.0);
        let machine_seconds = after.machine - before.machine;
        // The machine counter and the process counters are read at slightly
        // different moments, so the difference can come out a little below 0.
        let other_seconds =
            (machine_seconds - hookline_seconds - bench_seconds - backend_seconds).max(0.0);
        let hookline_cores = if wall_seconds > 0.0 {
            hookline_seconds / wall_seconds
        } else {
            0.0
        };
        Self {
            wall_seconds,
            hookline_seconds,
            hookline_cores,
            bench_seconds,
            backend_seconds,
            other_seconds,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    #[test]
    fn figures_between_samples() {
        let start = Instant::now();
        let before = CpuSample {
            at: start,
            hookline: 1.0,
            own: 0.5,
            backends: 2.0,
            machine: 10.0,
        };
        let after = CpuSample {
            at: start + Duration::from_secs(4),
            hookline: 5.0,
            own: 2.5,
            backends: 2.5,
            machine: 17.5,
        };
        let figures = CpuFigures::between(&before, &after);
        assert_eq!(figures.wall_seconds, 4.0);
        assert_eq!(figures.hookline_seconds, 4.0);
        assert_eq!(figures.hookline_cores, 1.0);
        assert_eq!(figures.bench_seconds, 2.0);
        assert_eq!(figures.backend_seconds, 0.5);
        assert_eq!(figures.other_seconds, 1.0);
    }

    #[test]
    fn sample_of_own_process() {
        let sample =
            CpuSample::take(&[std::process::id()], procfs::clock_ticks_per_second()).unwrap();
        assert!(sample.hookline >= 0.0);
        assert!(sample.machine >= sample.own);
    }
}
