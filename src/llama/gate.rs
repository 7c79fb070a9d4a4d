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
}

/// Waits for the turn of a computation with `threads` threads, then takes their cores.
pub(crate) fn enter(threads: usize) -> Turn {
    enter_at(&GATE, threads)
}

fn enter_at(gate: &'static Gate, threads: usize) -> Turn {
    let cores = threads.clamp(1, gate.cores);
    let mut s = gate.state.lock();
    let ticket = s.next;
    s.next += 1;
    while s.serving != ticket || (s.taken > 0 && s.taken + cores > gate.cores) {
        gate.changed.wait(&mut s);
    }
    s.serving += 1;
    s.taken += cores;
    drop(s);
    // The next ticket may fit beside this one.
    gate.changed.notify_all();
    Turn { gate, cores }
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
                        let _turn = enter_at(g, threads);
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
    fn turns_are_first_come_first_served() {
        let g = gate(2);
        let first = enter_at(g, 2);
        let order = Arc::new(Mutex::new(Vec::new()));
        let spawn = |id: usize, threads: usize| {
            let order = order.clone();
            std::thread::spawn(move || {
                let _t = enter_at(g, threads);
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
