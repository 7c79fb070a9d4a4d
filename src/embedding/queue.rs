//! The one queue every thread's embedding requests go through.
//!
//! Requests from all threads land here; a single inference thread takes them out in
//! batches (`next_batch`), so texts that arrive together share one model call. The
//! cache lives under the same lock as the queue: a text is either cached, queued, in
//! flight, or unknown, and a second request for a queued or in-flight text joins the
//! first instead of computing it again. That keeps vectors identical for identical
//! texts no matter which thread asked or how requests were batched.
//!
//! # The lock
//!
//! `Queue::state` is the only lock here, with `Queue::ready` the condition the
//! inference thread waits on. It is taken on JS threads (`submit`, the stats, cache
//! clearing), so nothing slow happens under it: the model runs between `next_batch` and
//! `complete`, with the lock released. Under it, replies go to the waiters through
//! oneshot senders, which only wake the receiving task (never run it), so no caller's
//! code runs under the lock. It is a leaf: nothing else is taken while it is held. The
//! runtime's `EMBEDDING` lock may be held when it is taken (`close` at shutdown), never
//! the other way round.

use super::cache::EmbeddingCache;
use crate::error::{OrionError, Result};
use parking_lot::{Condvar, Mutex};
use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::sync::oneshot;

pub(crate) use crate::engine::embedding::{Embedded, Vector};
pub(crate) type Reply = Result<Vector>;

#[derive(Clone, Debug, PartialEq)]
pub(crate) struct BatchConfig {
    /// Most texts one model call embeds.
    pub(crate) max_batch: usize,
    /// How long the inference thread waits for company once a first text is queued.
    pub(crate) max_wait: Duration,
    /// Most distinct texts waiting; beyond it submissions fail with OVERLOADED.
    pub(crate) max_queue: usize,
    pub(crate) cache_bytes: usize,
}

impl Default for BatchConfig {
    fn default() -> Self {
        Self {
            max_batch: 32,
            max_wait: Duration::from_millis(2),
            max_queue: 10_000,
            cache_bytes: 32 << 20,
        }
    }
}

/// What a submitted text turned into: a cached answer or a place to wait for one.
pub(crate) enum Slot {
    Ready(Vector),
    Waiting(oneshot::Receiver<Reply>),
}

struct State {
    /// Texts to compute, with when each was queued.
    pending: VecDeque<(Arc<str>, Instant)>,
    /// Texts taken into batches, and the time they waited in the queue in all.
    taken: u64,
    waited: Duration,
    /// Everyone waiting for a text that is queued or in flight.
    waiters: HashMap<Arc<str>, Vec<oneshot::Sender<Reply>>>,
    cache: EmbeddingCache,
    closed: bool,
    /// Size of the last batch taken: a lone caller's next text is not kept waiting for
    /// company that never came.
    last_batch: usize,
    /// How many texts the next batch waits for: the last batch's callers, who are likely
    /// to send again together, and whoever sent while it was computed.
    expected: usize,
}

pub(crate) struct Queue {
    state: Mutex<State>,
    ready: Condvar,
    config: BatchConfig,
}

/// Cache outcome of one `submit`, for the service's counters.
#[derive(Debug, Default, Clone, Copy, PartialEq)]
pub(crate) struct SubmitCounts {
    pub(crate) hits: u64,
    pub(crate) misses: u64,
}

impl Queue {
    pub(crate) fn new(config: BatchConfig) -> Self {
        Self {
            state: Mutex::new(State {
                pending: VecDeque::new(),
                taken: 0,
                waited: Duration::ZERO,
                waiters: HashMap::new(),
                cache: EmbeddingCache::new(config.cache_bytes),
                closed: false,
                last_batch: usize::MAX,
                expected: usize::MAX,
            }),
            ready: Condvar::new(),
            config,
        }
    }

    pub(crate) fn config(&self) -> &BatchConfig {
        &self.config
    }

    /// Answer each text from the cache or enqueue it. All or nothing: when the queue
    /// has no room for the texts that need computing, nothing is enqueued.
    pub(crate) fn submit(&self, texts: &[Arc<str>]) -> Result<(Vec<Slot>, SubmitCounts)> {
        let mut st = self.state.lock();
        if st.closed {
            return Err(OrionError::ShutDown);
        }
        let mut counts = SubmitCounts::default();
        let mut fresh: HashSet<&str> = HashSet::new();
        let mut cached: Vec<Option<Vector>> = Vec::with_capacity(texts.len());
        for t in texts {
            let hit = st.cache.get(t);
            if hit.is_none() && !st.waiters.contains_key(t) {
                fresh.insert(t);
            }
            cached.push(hit);
        }
        if fresh.len() > self.config.max_queue {
            // Retrying could never succeed: say so, and what the limit is.
            return Err(OrionError::InvalidInput(format!(
                "a batch of {} new texts is more than the queue holds (maxQueue {}): send it in \
                 parts of at most {} texts, or raise maxQueue",
                fresh.len(),
                self.config.max_queue,
                self.config.max_queue
            )));
        }
        if st.pending.len() + fresh.len() > self.config.max_queue {
            return Err(OrionError::Overloaded {
                queued: st.pending.len(),
                limit: self.config.max_queue,
            });
        }
        let was_empty = st.pending.is_empty();
        let mut slots = Vec::with_capacity(texts.len());
        for (t, hit) in texts.iter().zip(cached) {
            if let Some(v) = hit {
                counts.hits += 1;
                slots.push(Slot::Ready(v));
                continue;
            }
            counts.misses += 1;
            let (tx, rx) = oneshot::channel();
            let st = &mut *st;
            match st.waiters.entry(t.clone()) {
                Entry::Occupied(mut e) => e.get_mut().push(tx),
                Entry::Vacant(e) => {
                    e.insert(vec![tx]);
                    st.pending.push_back((t.clone(), Instant::now()));
                }
            }
            slots.push(Slot::Waiting(rx));
        }
        // Wake the inference thread for a first text, for a full batch, and when the
        // company it waits for (as many texts as its last batch had) is here.
        let n = st.pending.len();
        if (was_empty && n > 0) || n >= self.config.max_batch || n == st.expected {
            self.ready.notify_one();
        }
        Ok((slots, counts))
    }

    /// Block until texts are queued, give them a short time to gather into a batch (when
    /// the last batch had company, i.e. several callers are active), and take up to
    /// `max_batch` of them. Texts nobody waits for any more (timed out,
    /// aborted, worker gone) are dropped here rather than computed. `None` once closed.
    pub(crate) fn next_batch(&self) -> Option<Vec<Arc<str>>> {
        let mut st = self.state.lock();
        loop {
            while st.pending.is_empty() {
                if st.closed {
                    return None;
                }
                self.ready.wait(&mut st);
            }
            // Several callers are active: wait (at most `max_wait`) for as many texts as the
            // last batch had, since those callers are likely to send again together (eight
            // workers each awaiting one text send eight), and go as soon as they are here.
            let expected = st.expected.min(self.config.max_batch);
            if st.pending.len() < expected && !self.config.max_wait.is_zero() && st.last_batch > 1 {
                let deadline = Instant::now() + self.config.max_wait;
                while st.pending.len() < expected && !st.closed {
                    if self.ready.wait_until(&mut st, deadline).timed_out() {
                        break;
                    }
                }
            }
            let mut batch = Vec::new();
            while batch.len() < self.config.max_batch {
                let Some((t, queued)) = st.pending.pop_front() else {
                    break;
                };
                let live = match st.waiters.get_mut(&t) {
                    Some(ws) => {
                        ws.retain(|w| !w.is_closed());
                        !ws.is_empty()
                    }
                    None => false,
                };
                if live {
                    st.taken += 1;
                    st.waited += queued.elapsed();
                    batch.push(t);
                } else {
                    st.waiters.remove(&t);
                }
            }
            if !batch.is_empty() {
                st.last_batch = batch.len();
                st.expected = batch.len();
                return Some(batch);
            }
        }
    }

    /// Wait up to `timeout` for texts to be queued (or the queue to close): whether they
    /// were, so that the caller knows the service stayed idle.
    pub(crate) fn wait_for_work(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut st = self.state.lock();
        while st.pending.is_empty() && !st.closed {
            if self.ready.wait_until(&mut st, deadline).timed_out() {
                break;
            }
        }
        !st.pending.is_empty() || st.closed
    }

    /// Hand a batch's results to everyone waiting and remember them in the cache.
    pub(crate) fn complete(&self, batch: &[Arc<str>], result: Result<Vec<Vector>>) {
        let mut st = self.state.lock();
        // A caller whose text came too late for this batch is queued already, and this
        // batch's callers are about to send again: the next batch waits for all of them.
        // Waiting only for as many as this batch had, one straggler kept every later batch
        // one short, each time leaving someone else's text for a whole batch (eight
        // workers: mean batch 7.2 instead of 8).
        st.expected = st.last_batch.saturating_add(st.pending.len());
        match result {
            Ok(vectors) => {
                for (t, v) in batch.iter().zip(vectors) {
                    st.cache.insert(t.clone(), v.clone());
                    for w in st.waiters.remove(t).unwrap_or_default() {
                        let _ = w.send(Ok(v.clone()));
                    }
                }
            }
            Err(e) => {
                for t in batch {
                    for w in st.waiters.remove(t).unwrap_or_default() {
                        let _ = w.send(Err(e.clone()));
                    }
                }
            }
        }
    }

    /// Stop taking work: every waiter, queued or in flight, gets `SHUT_DOWN` now, and
    /// `next_batch` returns `None` from here on.
    pub(crate) fn close(&self) {
        let mut st = self.state.lock();
        st.closed = true;
        st.pending.clear();
        for (_, ws) in st.waiters.drain() {
            for w in ws {
                let _ = w.send(Err(OrionError::ShutDown));
            }
        }
        drop(st);
        self.ready.notify_all();
    }

    /// Whether anyone still waits for a text of `batch` (one in flight elsewhere, whose
    /// computation can be given up when nobody does).
    pub(crate) fn has_waiters(&self, batch: &[Arc<str>]) -> bool {
        let mut st = self.state.lock();
        batch.iter().any(|t| match st.waiters.get_mut(t) {
            Some(ws) => {
                ws.retain(|w| !w.is_closed());
                !ws.is_empty()
            }
            None => false,
        })
    }

    /// Give up computing `batch` because nobody waited for it: texts someone asked for
    /// since go back to the front of the queue, the rest are forgotten.
    pub(crate) fn give_up(&self, batch: &[Arc<str>]) {
        let mut st = self.state.lock();
        if st.closed {
            return;
        }
        let mut requeued = false;
        for t in batch.iter().rev() {
            let live = st.waiters.get_mut(t).is_some_and(|ws| {
                ws.retain(|w| !w.is_closed());
                !ws.is_empty()
            });
            if live {
                // Counted as waiting from now: its earlier wait is in the stats already.
                st.pending.push_front((t.clone(), Instant::now()));
                requeued = true;
            } else {
                st.waiters.remove(t);
            }
        }
        drop(st);
        if requeued {
            self.ready.notify_one();
        }
    }

    /// How long texts waited in the queue before their batch was taken, on average.
    pub(crate) fn mean_wait(&self) -> Duration {
        let st = self.state.lock();
        if st.taken == 0 {
            return Duration::ZERO;
        }
        Duration::from_secs_f64(st.waited.as_secs_f64() / st.taken as f64)
    }

    pub(crate) fn is_closed(&self) -> bool {
        self.state.lock().closed
    }

    pub(crate) fn depth(&self) -> usize {
        self.state.lock().pending.len()
    }

    pub(crate) fn cache_bytes(&self) -> usize {
        self.state.lock().cache.bytes()
    }

    pub(crate) fn cache_entries(&self) -> usize {
        self.state.lock().cache.len()
    }

    pub(crate) fn clear_cache(&self) {
        self.state.lock().cache.clear();
    }

    /// Shrink the cache to at most `bytes`; returns the bytes freed.
    pub(crate) fn shrink_cache(&self, bytes: usize) -> usize {
        self.state.lock().cache.evict_to(bytes)
    }
}

#[cfg(test)]
// Vectors are stored and handed back, never computed: equal means identical.
#[allow(clippy::float_cmp)]
mod tests {
    use super::*;

    fn cfg(max_batch: usize, max_wait_ms: u64, max_queue: usize) -> BatchConfig {
        BatchConfig {
            max_batch,
            max_wait: Duration::from_millis(max_wait_ms),
            max_queue,
            cache_bytes: 1 << 20,
        }
    }

    fn texts(v: &[&str]) -> Vec<Arc<str>> {
        v.iter().map(|s| Arc::from(*s)).collect()
    }

    fn waiting(slot: Slot) -> oneshot::Receiver<Reply> {
        match slot {
            Slot::Waiting(rx) => rx,
            Slot::Ready(_) => panic!("expected a waiting slot"),
        }
    }

    #[test]
    fn batches_are_bounded_and_keep_order() {
        let q = Queue::new(cfg(3, 0, 100));
        let (_slots, counts) = q.submit(&texts(&["a", "b", "c", "d", "e"])).unwrap();
        assert_eq!(counts.misses, 5);
        assert_eq!(q.next_batch().unwrap(), texts(&["a", "b", "c"]));
        assert_eq!(q.next_batch().unwrap(), texts(&["d", "e"]));
        assert_eq!(q.depth(), 0);
    }

    #[test]
    fn identical_texts_share_one_computation_and_the_cache_answers_repeats() {
        let q = Queue::new(cfg(8, 0, 100));
        let (s1, _) = q.submit(&texts(&["same"])).unwrap();
        let (s2, _) = q.submit(&texts(&["same", "same"])).unwrap();
        let batch = q.next_batch().unwrap();
        assert_eq!(batch, texts(&["same"]));
        q.complete(
            &batch,
            Ok(vec![Embedded::new(
                vec![1.0f32, 2.0],
                crate::engine::embedding::Read::default(),
            )]),
        );
        for slot in s1.into_iter().chain(s2) {
            let v = waiting(slot).blocking_recv().unwrap().unwrap();
            assert_eq!(&v[..], &[1.0, 2.0]);
        }
        let (s3, counts) = q.submit(&texts(&["same"])).unwrap();
        assert_eq!(counts, SubmitCounts { hits: 1, misses: 0 });
        assert!(matches!(&s3[0], Slot::Ready(v) if v[0] == 1.0));
    }

    #[test]
    fn full_queue_rejects_whole_submission() {
        let q = Queue::new(cfg(8, 0, 3));
        let _keep = q.submit(&texts(&["a", "b"])).unwrap();
        let err = q.submit(&texts(&["c", "d"])).err().unwrap();
        assert_eq!(err.code(), "OVERLOADED");
        assert_eq!(q.depth(), 2);
        // Joining an already queued text needs no room.
        assert!(q.submit(&texts(&["a", "c"])).is_ok());
    }

    #[test]
    fn abandoned_texts_are_not_computed() {
        let q = Queue::new(cfg(8, 0, 100));
        let (slots, _) = q.submit(&texts(&["gone", "kept"])).unwrap();
        let mut it = slots.into_iter();
        drop(it.next());
        let _kept = it.next();
        assert_eq!(q.next_batch().unwrap(), texts(&["kept"]));
    }

    #[test]
    fn errors_reach_every_waiter() {
        let q = Queue::new(cfg(8, 0, 100));
        let (slots, _) = q.submit(&texts(&["x", "y"])).unwrap();
        let batch = q.next_batch().unwrap();
        q.complete(&batch, Err(OrionError::InferenceFailed("boom".into())));
        for s in slots {
            let e = waiting(s).blocking_recv().unwrap().unwrap_err();
            assert_eq!(e.code(), "INFERENCE_FAILED");
        }
        assert_eq!(q.cache_entries(), 0);
    }

    #[test]
    fn waits_briefly_to_gather_texts_from_several_threads() {
        let q = Arc::new(Queue::new(cfg(8, 200, 100)));
        let producers: Vec<_> = (0..8)
            .map(|i| {
                let q = q.clone();
                std::thread::spawn(move || {
                    let (slots, _) = q.submit(&[Arc::from(format!("t{i}"))]).unwrap();
                    slots
                })
            })
            .collect();
        let slots: Vec<_> = producers
            .into_iter()
            .flat_map(|p| p.join().unwrap())
            .collect();
        // All eight were queued before the consumer looked: one full batch.
        let batch = q.next_batch().unwrap();
        assert_eq!(batch.len(), 8);
        drop(slots);
    }

    #[test]
    fn consumer_gathers_late_arrivals_within_max_wait() {
        let q = Arc::new(Queue::new(cfg(4, 500, 100)));
        let consumer = {
            let q = q.clone();
            std::thread::spawn(move || q.next_batch().unwrap())
        };
        let mut keep = Vec::new();
        for i in 0..4 {
            keep.push(q.submit(&[Arc::from(format!("late{i}"))]).unwrap());
            std::thread::sleep(Duration::from_millis(5));
        }
        // The batch fills up before the 500 ms wait runs out, so all four travel together.
        assert_eq!(consumer.join().unwrap().len(), 4);
    }

    #[test]
    fn the_wait_ends_once_as_many_texts_as_the_last_batch_are_here() {
        let q = Arc::new(Queue::new(cfg(32, 2000, 100)));
        let _first = q.submit(&texts(&["a", "b", "c"])).unwrap();
        // No history yet: the first batch waits for company as before.
        assert_eq!(q.next_batch().unwrap().len(), 3);
        let consumer = {
            let q = q.clone();
            std::thread::spawn(move || {
                let t = Instant::now();
                (q.next_batch().unwrap().len(), t.elapsed())
            })
        };
        let mut keep = Vec::new();
        for t in ["d", "e", "f"] {
            std::thread::sleep(Duration::from_millis(5));
            keep.push(q.submit(&texts(&[t])).unwrap());
        }
        let (n, waited) = consumer.join().unwrap();
        assert_eq!(n, 3);
        assert!(waited < Duration::from_millis(1000), "{waited:?}");
    }

    #[test]
    fn a_text_that_missed_its_batch_does_not_keep_the_next_ones_short() {
        let q = Arc::new(Queue::new(cfg(32, 1000, 100)));
        let seven: Vec<String> = (0..7).map(|i| format!("w{i}-1")).collect();
        let seven: Vec<&str> = seven.iter().map(String::as_str).collect();
        let _first = q.submit(&texts(&seven)).unwrap();
        let batch = q.next_batch().unwrap();
        assert_eq!(batch.len(), 7);
        // The eighth caller's text arrives while the seven are computed.
        let _late = q.submit(&texts(&["w7-1"])).unwrap();
        q.complete(
            &batch,
            Ok(vec![
                Embedded::new(
                    vec![0.0],
                    crate::engine::embedding::Read::default()
                );
                7
            ]),
        );
        let consumer = {
            let q = q.clone();
            std::thread::spawn(move || q.next_batch().unwrap().len())
        };
        // The seven send again, the last one a little late.
        let mut keep = Vec::new();
        for i in 0..7 {
            std::thread::sleep(Duration::from_millis(if i == 6 { 60 } else { 2 }));
            keep.push(q.submit(&texts(&[&format!("w{i}-2")])).unwrap());
        }
        assert_eq!(consumer.join().unwrap(), 8);
    }

    #[test]
    fn a_lone_caller_is_not_kept_waiting() {
        let q = Queue::new(cfg(8, 300, 100));
        let _a = q.submit(&texts(&["first"])).unwrap();
        let t = Instant::now();
        assert_eq!(q.next_batch().unwrap().len(), 1); // no history: waits for company
        assert!(t.elapsed() >= Duration::from_millis(250));
        let _b = q.submit(&texts(&["second"])).unwrap();
        let t = Instant::now();
        assert_eq!(q.next_batch().unwrap().len(), 1); // the last batch was alone: no wait
        assert!(t.elapsed() < Duration::from_millis(100));
    }

    #[test]
    fn the_time_texts_wait_for_their_batch_is_averaged() {
        let q = Queue::new(cfg(8, 0, 100));
        assert_eq!(q.mean_wait(), Duration::ZERO);
        let _s = q.submit(&texts(&["a", "b"])).unwrap();
        std::thread::sleep(Duration::from_millis(30));
        assert_eq!(q.next_batch().unwrap().len(), 2);
        let w = q.mean_wait();
        assert!(
            w >= Duration::from_millis(30) && w < Duration::from_secs(5),
            "{w:?}"
        );
    }

    #[test]
    fn a_given_up_batch_requeues_only_the_texts_someone_still_waits_for() {
        let q = Queue::new(cfg(8, 0, 100));
        let (slots, _) = q.submit(&texts(&["gone", "kept"])).unwrap();
        let batch = q.next_batch().unwrap();
        assert!(q.has_waiters(&batch));
        let mut it = slots.into_iter();
        drop(it.next());
        let kept = it.next();
        assert!(q.has_waiters(&batch));
        q.give_up(&batch);
        assert_eq!(q.next_batch().unwrap(), texts(&["kept"]));
        drop(kept);
        assert!(!q.has_waiters(&texts(&["kept"])));
    }

    #[test]
    fn close_wakes_the_consumer() {
        let q = Arc::new(Queue::new(cfg(4, 0, 100)));
        let consumer = {
            let q = q.clone();
            std::thread::spawn(move || q.next_batch())
        };
        std::thread::sleep(Duration::from_millis(20));
        q.close();
        assert!(consumer.join().unwrap().is_none());
        assert_eq!(q.submit(&texts(&["a"])).err(), Some(OrionError::ShutDown));
    }

    #[test]
    fn waiting_for_work_tells_idle_from_busy() {
        let q = Arc::new(Queue::new(cfg(4, 0, 100)));
        // Nothing comes: idle once the time is up, not before.
        let started = Instant::now();
        assert!(!q.wait_for_work(Duration::from_millis(30)));
        assert!(started.elapsed() >= Duration::from_millis(30));
        // Work submitted while waiting ends the wait early.
        let waiter = {
            let q = q.clone();
            std::thread::spawn(move || {
                let started = Instant::now();
                (q.wait_for_work(Duration::from_secs(10)), started.elapsed())
            })
        };
        std::thread::sleep(Duration::from_millis(20));
        let _kept = q.submit(&texts(&["a"])).unwrap();
        let (busy, elapsed) = waiter.join().unwrap();
        assert!(busy);
        assert!(elapsed < Duration::from_secs(5), "{elapsed:?}");
        // Queued work or a closed queue answer at once.
        assert!(q.wait_for_work(Duration::from_secs(10)));
        let _ = q.next_batch();
        q.close();
        assert!(q.wait_for_work(Duration::from_secs(10)));
    }

    #[test]
    fn close_answers_every_waiter_with_shut_down() {
        let q = Queue::new(cfg(1, 0, 100));
        let (mut slots, _) = q.submit(&texts(&["in flight", "queued"])).unwrap();
        let _batch = q.next_batch().unwrap(); // "in flight" is being computed
        q.close();
        assert!(q.next_batch().is_none());
        for slot in slots.drain(..) {
            let Slot::Waiting(mut rx) = slot else {
                panic!("nothing was cached")
            };
            assert_eq!(rx.try_recv().unwrap(), Err(OrionError::ShutDown));
        }
    }

    #[test]
    fn shrinking_the_cache_frees_bytes() {
        let q = Queue::new(cfg(8, 0, 100));
        let (_s, _) = q.submit(&texts(&["a", "b"])).unwrap();
        let batch = q.next_batch().unwrap();
        q.complete(
            &batch,
            Ok(vec![
                Embedded::new(vec![0.0f32; 16], crate::engine::embedding::Read::default()),
                Embedded::new(vec![0.0f32; 16], crate::engine::embedding::Read::default()),
            ]),
        );
        let before = q.cache_bytes();
        assert!(before > 0);
        assert!(q.shrink_cache(before / 2) > 0);
        assert!(q.cache_bytes() <= before / 2);
        q.clear_cache();
        assert_eq!(q.cache_bytes(), 0);
    }
}
