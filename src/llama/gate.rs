//! Turns for llama.cpp's computations on the CPU, process-wide.
//!
//! Every context computes with its own threads (each service and generation thread has
//! its own OpenMP team), by default as many as there are cores. Two computations at once
//! (a generation and a batch of GGUF embeddings, or two embedding models) then put twice
//! as many threads on the cores: ggml's threads meet at a barrier after every operation,
//! and one waiting there for a thread whose core the other computation took waits for
//! it to be scheduled again. Measured on 2 cores (the demo model generating while a GGUF
//! embedding model embedded single texts without pause), with the OpenMP settings
//! `lib/binding.js` chooses: 30 tokens/s and 71 texts/s at once, 86 tokens/s and 82
//! texts/s taking turns (145 tokens/s with the embedding model idle).
//!
//! So a computation takes as many of the cores as it has threads and waits while they
//! are taken; turns are first come, first served, so a generation's next token waits for
//! at most the one batch that asked before it, and the batch for at most one token. A
//! computation with more threads than cores takes them all. Models with layers on a GPU
//! device do not take turns (the GPU's work should not wait for the CPU's), even split
//! with the CPU; nor do ONNX Runtime's computations, whose threads are its own.
//!
//! Other processes take cores the same way, and the gate cannot make them wait: with the
//! other of 2 cores busy in another process, a GGUF embedding model's single texts came
//! at 79 a second on 2 threads and 180 on 1 (380 on 2 with both cores free), the demo
//! model's generation at 30 tokens/s instead of about 100. So a computation that may
//! (`enter`'s `adapt`) takes fewer threads than it has while other processes keep cores
//! busy: the cores they leave, at least one (see [`taken_elsewhere`]); and the cores
//! they take are not handed to another of our computations meanwhile.

use parking_lot::{Condvar, Mutex};
use std::sync::LazyLock;

#[derive(Default)]
struct State {
    /// Cores taken by the computations running.
    taken: usize,
    /// The next ticket to hand out, and the ticket whose turn it is.
    next: u64,
    serving: u64,
}

struct Gate {
    state: Mutex<State>,
    changed: Condvar,
    cores: usize,
}

static GATE: LazyLock<Gate> = LazyLock::new(|| Gate {
    state: Mutex::default(),
    changed: Condvar::new(),
    cores: std::thread::available_parallelism().map_or(1, usize::from),
});

/// A computation's turn, held until it is dropped.
pub(crate) struct Turn {
    gate: &'static Gate,
    cores: usize,
    threads: usize,
}

impl Turn {
    /// The threads to compute with in this turn.
    pub(crate) fn threads(&self) -> usize {
        self.threads
    }
}

/// Waits for the turn of a computation with `threads` threads, then takes their cores.
/// With `adapt`, the cores other processes keep busy count as taken: the turn may be for
/// fewer threads ([`Turn::threads`]), and waits while ours hold the cores left.
pub(crate) fn enter(threads: usize, adapt: bool) -> Turn {
    if !adapt {
        return enter_at(&GATE, threads, GATE.cores);
    }
    let elsewhere = taken_elsewhere(crate::sysmem::cores_busy_elsewhere());
    let free = GATE.cores.saturating_sub(elsewhere).max(1);
    let threads = if elsewhere == 0 {
        threads
    } else {
        threads.min(free)
    };
    enter_at(&GATE, threads, free)
}

/// How many cores other processes take while they keep `busy` cores' worth of CPU time
/// busy. A core counts as taken once more than half of its time is: a process that takes
/// less lets ggml's threads through most of the time. The reading cannot tell a process
/// that competes for a core from a low-priority one that only fills it while ours wait:
/// both count.
fn taken_elsewhere(busy: f64) -> usize {
    if busy.is_finite() && busy > 0.0 {
        (busy + 0.5).floor() as usize
    } else {
        0
    }
}

/// `enter`, with `free` of the gate's cores ours to take (the others busy elsewhere).
fn enter_at(gate: &'static Gate, threads: usize, free: usize) -> Turn {
    let cores = threads.clamp(1, gate.cores);
    let mut s = gate.state.lock();
    let ticket = s.next;
    s.next += 1;
    while s.serving != ticket || (s.taken > 0 && s.taken + cores > free) {
        gate.changed.wait(&mut s);
    }
    s.serving += 1;
    s.taken += cores;
    drop(s);
    // The next ticket may fit beside this one.
    gate.changed.notify_all();
    Turn {
        gate,
        cores,
        threads,
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        self.gate.state.lock().taken -= self.cores;
        self.gate.changed.notify_all();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    fn gate(cores: usize) -> &'static Gate {
        Box::leak(Box::new(Gate {
            state: Mutex::default(),
            changed: Condvar::new(),
            cores,
        }))
    }

    /// Most cores ever taken at once by `jobs` computations of `threads` each.
    fn most_taken(cores: usize, threads: usize, jobs: usize) -> usize {
        let g = gate(cores);
        let now = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let handles: Vec<_> = (0..jobs)
            .map(|_| {
                let (now, most) = (now.clone(), most.clone());
                std::thread::spawn(move || {
                    for _ in 0..20 {
                        let _turn = enter_at(g, threads, cores);
                        let n = now.fetch_add(threads.min(cores), Ordering::SeqCst)
                            + threads.min(cores);
                        most.fetch_max(n, Ordering::SeqCst);
                        std::thread::sleep(Duration::from_micros(200));
                        now.fetch_sub(threads.min(cores), Ordering::SeqCst);
                    }
                })
            })
            .collect();
        for h in handles {
            h.join().unwrap();
        }
        most.load(Ordering::SeqCst)
    }

    #[test]
    fn computations_never_take_more_cores_than_there_are() {
        // Two cores, computations of two threads: one at a time.
        assert_eq!(most_taken(2, 2, 3), 2);
        // Eight cores, computations of two threads: up to four at once, never more.
        let m = most_taken(8, 2, 6);
        assert!((2..=8).contains(&m), "{m}");
        // More threads than cores: the computation takes them all, alone.
        assert_eq!(most_taken(2, 16, 3), 2);
    }

    #[test]
    fn cores_other_processes_keep_busy() {
        assert_eq!(taken_elsewhere(0.0), 0);
        assert_eq!(taken_elsewhere(0.4), 0);
        // One core (a process at 67 % once ours share the cores with it).
        assert_eq!(taken_elsewhere(0.67), 1);
        assert_eq!(taken_elsewhere(1.0), 1);
        assert_eq!(taken_elsewhere(1.2), 1);
        assert_eq!(taken_elsewhere(9.0), 9);
        // A reading the system could not make.
        assert_eq!(taken_elsewhere(f64::NAN), 0);
        assert_eq!(taken_elsewhere(-1.0), 0);
    }

    #[test]
    fn cores_taken_elsewhere_are_not_handed_out() {
        // Two cores, one busy elsewhere: computations of one thread take turns.
        let g = gate(2);
        let first = enter_at(g, 1, 1);
        let entered = Arc::new(AtomicUsize::new(0));
        let e = entered.clone();
        let second = std::thread::spawn(move || {
            let _t = enter_at(g, 1, 1);
            e.store(1, Ordering::SeqCst);
        });
        std::thread::sleep(Duration::from_millis(50));
        assert_eq!(entered.load(Ordering::SeqCst), 0);
        drop(first);
        second.join().unwrap();
        assert_eq!(entered.load(Ordering::SeqCst), 1);
        // With both cores free, both at once.
        let a = enter_at(g, 1, 2);
        let b = enter_at(g, 1, 2);
        drop((a, b));
    }

    #[test]
    fn turns_are_first_come_first_served() {
        let g = gate(2);
        let first = enter_at(g, 2, 2);
        let order = Arc::new(Mutex::new(Vec::new()));
        let spawn = |id: usize, threads: usize| {
            let order = order.clone();
            std::thread::spawn(move || {
                let _t = enter_at(g, threads, 2);
                order.lock().push(id);
            })
        };
        let a = spawn(1, 2);
        // `a` holds ticket 1 before `b` asks.
        while g.state.lock().next < 2 {
            std::thread::yield_now();
        }
        let b = spawn(2, 1);
        while g.state.lock().next < 3 {
            std::thread::yield_now();
        }
        drop(first);
        a.join().unwrap();
        b.join().unwrap();
        assert_eq!(*order.lock(), vec![1, 2]);
    }
}
