//! The helper threads of the CPU kernels: started once, on first use, one per core but the
//! caller's, and kept waiting for work. A dense layer of a small model takes tens of
//! microseconds, about what it costs to start a thread; the kernels run hundreds of them a
//! batch, so they hand their parts to these threads instead of spawning their own.
//!
//! One caller uses the helpers at a time. A caller that finds them busy (another encoder, or a
//! part that itself asks for helpers) runs its parts in turn on its own thread: the same
//! results, as every kernel's result is independent of how its parts are spread.

use std::cell::Cell;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};

use crossbeam_channel::{unbounded, Sender};

/// The number of cores this process may use (read once): what the kernels split their work
/// over, and what "all cores" means wherever a thread count is 0.
pub fn cores() -> usize {
    static N: OnceLock<usize> = OnceLock::new();
    *N.get_or_init(|| {
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(1)
    })
}

/// A part for a helper: `f(part)`, then one off `done`'s count.
struct Job {
    f: *const (dyn Fn(usize) + Sync),
    part: usize,
    done: *const Latch,
}

// SAFETY: `f` is `Sync` and `done` is made of atomics and a `Thread`; both outlive the job, as
// `run_parts` does not return (or unwind) before every job it handed out has counted down.
unsafe impl Send for Job {}

/// How many parts are still running, and the thread waiting for them.
struct Latch {
    left: AtomicUsize,
    panicked: AtomicBool,
    owner: std::thread::Thread,
}

struct Pool {
    helpers: Vec<Sender<Job>>,
    /// Held by the caller whose parts the helpers run.
    busy: Mutex<()>,
}

fn pool() -> &'static Pool {
    static POOL: OnceLock<Pool> = OnceLock::new();
    POOL.get_or_init(|| {
        let helpers = (1..cores())
            .filter_map(|i| {
                let (tx, rx) = unbounded::<Job>();
                std::thread::Builder::new()
                    .name(format!("pelt-kernel-{i}"))
                    .spawn(move || {
                        for job in rx {
                            // SAFETY: see `Job`: `f` and `done` live until `done` reaches 0.
                            let (f, done) = unsafe { (&*job.f, &*job.done) };
                            let ok = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                                f(job.part)
                            }))
                            .is_ok();
                            if !ok {
                                done.panicked.store(true, Ordering::Relaxed);
                            }
                            // The waiting thread may free `done` as soon as the count is 0.
                            let owner = done.owner.clone();
                            if done.left.fetch_sub(1, Ordering::AcqRel) == 1 {
                                owner.unpark();
                            }
                        }
                    })
                    .ok()
                    .map(|_| tx)
            })
            .collect();
        Pool {
            helpers,
            busy: Mutex::new(()),
        }
    })
}

thread_local! {
    /// Set by [`on_this_thread`]: the kernels called on this thread keep their work here.
    static ALONE: Cell<bool> = const { Cell::new(false) };
}

/// Runs `f` with every CPU kernel it calls kept on the calling thread: no helpers, no parts.
/// For callers that already keep each core busy with a thread of their own (the build runs
/// whole batches on one such thread per core when the model's kernels are too small to split
/// well); the results are the same as with helpers.
pub fn on_this_thread<R>(f: impl FnOnce() -> R) -> R {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            ALONE.with(|a| a.set(self.0));
        }
    }
    let _restore = Restore(ALONE.with(|a| a.replace(true)));
    f()
}

/// How many parts a kernel called on this thread should split its work into: one per core,
/// or one inside [`on_this_thread`].
pub(in crate::model) fn threads() -> usize {
    if ALONE.with(Cell::get) {
        1
    } else {
        cores()
    }
}

/// Waits, when dropped (returned from or unwound through), until the helpers' parts are done.
struct Wait<'a>(&'a Latch);

impl Drop for Wait<'_> {
    fn drop(&mut self) {
        let mut spins = 0u32;
        while self.0.left.load(Ordering::Acquire) != 0 {
            if spins < 2000 {
                spins += 1;
                std::hint::spin_loop();
            } else {
                std::thread::park();
            }
        }
    }
}

/// Runs `f(0)`, …, `f(parts − 1)`, part 0 on this thread and the others on the helper
/// threads when they are free (in turn on this thread when they are not), and returns when all
/// have returned. A panic in any part panics here, after all parts have stopped.
pub(super) fn run_parts(parts: usize, f: &(dyn Fn(usize) + Sync)) {
    if parts <= 1 || ALONE.with(Cell::get) {
        (0..parts).for_each(f);
        return;
    }
    let pool = pool();
    // A part that panicked on this thread poisoned the lock; the helpers are fine all the same.
    let guard = match pool.busy.try_lock() {
        Ok(g) => Some(g),
        Err(std::sync::TryLockError::Poisoned(p)) => Some(p.into_inner()),
        Err(std::sync::TryLockError::WouldBlock) => None,
    };
    let Some(guard) = guard.filter(|_| !pool.helpers.is_empty()) else {
        (0..parts).for_each(f);
        return;
    };
    let latch = Latch {
        left: AtomicUsize::new(parts - 1),
        panicked: AtomicBool::new(false),
        owner: std::thread::current(),
    };
    {
        let wait = Wait(&latch);
        // SAFETY (the lifetime erased here): `wait` keeps `f` and `latch` alive until every
        // job has counted down.
        let f_static: *const (dyn Fn(usize) + Sync) = unsafe {
            std::mem::transmute::<&(dyn Fn(usize) + Sync), &'static (dyn Fn(usize) + Sync)>(f)
        };
        for part in 1..parts {
            let job = Job {
                f: f_static,
                part,
                done: &latch,
            };
            if let Err(e) = pool.helpers[(part - 1) % pool.helpers.len()].send(job) {
                // A helper that is gone (it cannot be: they never stop): run its part here.
                let job = e.into_inner();
                f(job.part);
                latch.left.fetch_sub(1, Ordering::AcqRel);
            }
        }
        f(0);
        drop(wait);
    }
    drop(guard);
    if latch.panicked.load(Ordering::Relaxed) {
        panic!("a part run on a kernel helper thread panicked");
    }
}

/// A pointer that parts may share; each part touches only its own elements.
pub(super) struct Shared<T>(pub(super) *mut T);

impl<T> Shared<T> {
    /// The pointer (a method, so that closures capture the whole `Sync` wrapper).
    pub(super) fn ptr(&self) -> *mut T {
        self.0
    }
}
// SAFETY: its users (`for_each_chunk_mut`, the sgemm) hand disjoint elements to their parts.
unsafe impl<T: Send> Sync for Shared<T> {}
unsafe impl<T: Send> Send for Shared<T> {}

/// Runs `f(i, chunk)` on the `i`-th chunk of `chunk` values of `v` (the last may be shorter),
/// the chunks spread as [`run_parts`] spreads parts.
pub(super) fn for_each_chunk_mut<T: Send>(
    v: &mut [T],
    chunk: usize,
    f: &(dyn Fn(usize, &mut [T]) + Sync),
) {
    let (len, chunk) = (v.len(), chunk.max(1));
    let p = Shared(v.as_mut_ptr());
    run_parts(len.div_ceil(chunk), &|i| {
        let start = i * chunk;
        // SAFETY: the chunks `start..start + n` of the parts are disjoint and inside `v`,
        // which is borrowed mutably for as long as they run.
        let part =
            unsafe { std::slice::from_raw_parts_mut(p.ptr().add(start), chunk.min(len - start)) };
        f(i, part)
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_part_runs_once_and_panics_come_back() {
        let counts: Vec<AtomicUsize> = (0..37).map(|_| AtomicUsize::new(0)).collect();
        for _ in 0..200 {
            run_parts(counts.len(), &|i| {
                counts[i].fetch_add(1, Ordering::Relaxed);
            });
        }
        assert!(counts.iter().all(|c| c.load(Ordering::Relaxed) == 200));

        let mut v: Vec<usize> = vec![0; 1001];
        for_each_chunk_mut(&mut v, 100, &|i, part| {
            part.iter_mut()
                .enumerate()
                .for_each(|(j, x)| *x = i * 100 + j)
        });
        assert!(v.iter().enumerate().all(|(i, &x)| i == x));

        // Nested: the inner call finds the helpers busy and runs its parts in turn.
        let total = AtomicUsize::new(0);
        run_parts(4, &|_| {
            run_parts(3, &|j| {
                total.fetch_add(j + 1, Ordering::Relaxed);
            })
        });
        assert_eq!(total.load(Ordering::Relaxed), 4 * 6);

        let r = std::panic::catch_unwind(|| {
            run_parts(8, &|i| {
                if i == 7 {
                    panic!("part 7");
                }
            })
        });
        assert!(r.is_err());
        // The helpers still work after a panic.
        let n = AtomicUsize::new(0);
        run_parts(8, &|_| {
            n.fetch_add(1, Ordering::Relaxed);
        });
        assert_eq!(n.load(Ordering::Relaxed), 8);
    }

    #[test]
    fn on_this_thread_keeps_every_part_here_and_then_restores() {
        let here = std::thread::current().id();
        let ran_here = AtomicUsize::new(0);
        let r = on_this_thread(|| {
            assert_eq!(threads(), 1);
            run_parts(16, &|_| {
                if std::thread::current().id() == here {
                    ran_here.fetch_add(1, Ordering::Relaxed);
                }
            });
            7
        });
        assert_eq!((r, ran_here.load(Ordering::Relaxed)), (7, 16));
        assert_eq!(threads(), cores());
        // Restored after a panic inside too.
        assert!(std::panic::catch_unwind(|| on_this_thread(|| panic!("inside"))).is_err());
        assert_eq!(threads(), cores());
    }
}
