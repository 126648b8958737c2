//! One Limited priority level's seats and queues: shuffle sharding of flows onto
//! queues, and fair queuing among the queues.
//!
//! A request takes a seat at once when one is free and nothing waits. Otherwise its
//! flow's hash deals a hand of `handSize` queues out of `queues` (Kubernetes' dealer),
//! and it joins the shortest queue of that hand, or is rejected when that queue
//! already holds `queueLengthLimit` requests (or when the level rejects instead of
//! queuing). When a seat frees, the queue whose head request has the smallest virtual
//! finish time goes next. This is start-time fair queuing where a request costs its
//! width, the seats it occupies (a list of many objects takes several, see
//! `estimate`); Kubernetes also weighs the measured duration, which Keelson does not.
//! A flow that sends much waits behind itself, not in front of others. A wide request
//! at the head waits until enough seats are free; nothing overtakes it, so it cannot
//! starve.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex};
use tokio::sync::oneshot;

/// How a level is configured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueConfig {
    /// Seats: requests that may execute at once.
    pub concurrency: usize,
    /// 0 when the level rejects instead of queuing.
    pub queues: usize,
    pub hand_size: usize,
    pub queue_length_limit: usize,
}

struct Waiter {
    id: u64,
    /// Seats it occupies once dispatched.
    width: usize,
    /// Virtual start and finish times.
    start: u64,
    finish: u64,
    wake: oneshot::Sender<()>,
}

#[derive(Default)]
struct Queue {
    waiting: VecDeque<Waiter>,
    /// The virtual finish time of the last request enqueued here.
    last_finish: u64,
    /// Seats its requests occupy.
    executing: usize,
}

struct State {
    /// Seats occupied.
    executing: usize,
    queues: Vec<Queue>,
    /// Virtual time: the start time of the last request dispatched.
    now: u64,
    next_id: u64,
    waiting: usize,
}

/// The shared state of one level.
pub struct QueueSet {
    pub config: QueueConfig,
    state: Mutex<State>,
}

/// What [`QueueSet::enqueue`] decided.
pub enum Admission {
    /// Execute now; the seat is held until the [`Seat`] is dropped.
    Dispatched(Seat),
    /// Wait for the seat.
    Queued(Ticket),
    /// The level is full.
    Rejected,
}

/// A seat taken; dropping it frees the seat for the next request.
pub struct Seat {
    set: Arc<QueueSet>,
    queue: Option<usize>,
    width: usize,
}

impl Drop for Seat {
    fn drop(&mut self) {
        self.set.release(self.queue, self.width);
    }
}

/// A request waiting in a queue.
pub struct Ticket {
    set: Arc<QueueSet>,
    queue: usize,
    width: usize,
    id: u64,
    rx: Option<oneshot::Receiver<()>>,
}

impl Ticket {
    /// Wait until dispatched; `None` after `timeout` (the request is taken out of its
    /// queue and must be rejected).
    pub async fn wait(mut self, timeout: std::time::Duration) -> Option<Seat> {
        let rx = self.rx.take().expect("waited once");
        match tokio::time::timeout(timeout, rx).await {
            Ok(Ok(())) => {
                let seat = Seat {
                    set: self.set.clone(),
                    queue: Some(self.queue),
                    width: self.width,
                };
                // The seat now owns the accounting; the ticket has nothing to undo.
                self.id = u64::MAX;
                Some(seat)
            }
            _ => None,
        }
    }
}

impl Drop for Ticket {
    /// A ticket dropped before it was dispatched (timeout, client gone) leaves its
    /// queue; one dispatched in the meantime gives its seat back.
    fn drop(&mut self) {
        if self.id == u64::MAX {
            return;
        }
        let dispatched = {
            let mut st = self.set.state.lock().expect("queue set");
            let q = &mut st.queues[self.queue];
            match q.waiting.iter().position(|w| w.id == self.id) {
                Some(i) => {
                    q.waiting.remove(i);
                    st.waiting -= 1;
                    false
                }
                None => true,
            }
        };
        if dispatched {
            self.set.release(Some(self.queue), self.width);
        }
    }
}

/// Kubernetes' shuffle-sharding dealer: `hand` distinct cards out of `deck`, from the
/// flow's hash.
pub fn deal(mut hash: u64, deck: usize, hand: usize) -> Vec<usize> {
    let mut cards: Vec<usize> = Vec::with_capacity(hand);
    for i in 0..hand.min(deck) {
        let left = (deck - i) as u64;
        let mut card = (hash % left) as usize;
        hash /= left;
        // Skip the cards already dealt, in order.
        let mut dealt = cards.clone();
        dealt.sort_unstable();
        for d in dealt {
            if card >= d {
                card += 1;
            }
        }
        cards.push(card);
    }
    cards
}

impl QueueSet {
    pub fn new(config: QueueConfig) -> Arc<QueueSet> {
        Arc::new(QueueSet {
            config,
            state: Mutex::new(State {
                executing: 0,
                queues: (0..config.queues).map(|_| Queue::default()).collect(),
                now: 0,
                next_id: 0,
                waiting: 0,
            }),
        })
    }

    /// Requests executing and waiting now.
    pub fn counts(&self) -> (usize, usize) {
        let st = self.state.lock().expect("queue set");
        (st.executing, st.waiting)
    }

    /// Admit a request of the flow whose hash is `flow` that occupies `width` seats
    /// (at most the level's concurrency: a wider one would never fit).
    pub fn enqueue(self: &Arc<Self>, flow: u64, width: usize) -> Admission {
        let mut st = self.state.lock().expect("queue set");
        let cfg = self.config;
        let width = width.clamp(1, cfg.concurrency.max(1));
        if cfg.queues == 0 {
            if st.executing + width <= cfg.concurrency {
                st.executing += width;
                return Admission::Dispatched(Seat {
                    set: self.clone(),
                    queue: None,
                    width,
                });
            }
            return Admission::Rejected;
        }
        let hand = deal(flow, cfg.queues, cfg.hand_size.max(1));
        let q = *hand
            .iter()
            .min_by_key(|&&i| st.queues[i].waiting.len() + st.queues[i].executing)
            .expect("a hand has a card");
        if st.executing + width <= cfg.concurrency && st.waiting == 0 {
            st.executing += width;
            st.queues[q].executing += width;
            let now = st.now;
            let queue = &mut st.queues[q];
            queue.last_finish = queue.last_finish.max(now) + width as u64;
            return Admission::Dispatched(Seat {
                set: self.clone(),
                queue: Some(q),
                width,
            });
        }
        if st.queues[q].waiting.len() >= cfg.queue_length_limit {
            return Admission::Rejected;
        }
        let (tx, rx) = oneshot::channel();
        let id = st.next_id;
        st.next_id += 1;
        let now = st.now;
        let queue = &mut st.queues[q];
        let start = queue.last_finish.max(now);
        queue.last_finish = start + width as u64;
        queue.waiting.push_back(Waiter {
            id,
            width,
            start,
            finish: start + width as u64,
            wake: tx,
        });
        st.waiting += 1;
        drop(st);
        // Seats may have freed between the check and here.
        self.dispatch();
        Admission::Queued(Ticket {
            set: self.clone(),
            queue: q,
            width,
            id,
            rx: Some(rx),
        })
    }

    fn release(&self, queue: Option<usize>, width: usize) {
        {
            let mut st = self.state.lock().expect("queue set");
            st.executing -= width;
            if let Some(q) = queue {
                st.queues[q].executing -= width;
            }
        }
        self.dispatch();
    }

    /// Hand free seats to the waiting requests with the smallest finish times, while
    /// the next one fits.
    fn dispatch(&self) {
        let mut st = self.state.lock().expect("queue set");
        while st.waiting > 0 {
            let Some((q, width)) = st
                .queues
                .iter()
                .enumerate()
                .filter_map(|(i, q)| q.waiting.front().map(|w| (w.finish, i, w.width)))
                .min()
                .map(|(_, i, width)| (i, width))
            else {
                break;
            };
            if st.executing + width > self.config.concurrency {
                break;
            }
            let w = st.queues[q].waiting.pop_front().expect("non-empty");
            st.waiting -= 1;
            st.now = st.now.max(w.start);
            st.executing += width;
            st.queues[q].executing += width;
            if w.wake.send(()).is_err() {
                // Its ticket is being dropped right now: it gives the seats back itself
                // when it finds itself gone from the queue.
                continue;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    fn cfg(concurrency: usize, queues: usize, hand: usize, limit: usize) -> QueueConfig {
        QueueConfig {
            concurrency,
            queues,
            hand_size: hand,
            queue_length_limit: limit,
        }
    }

    #[test]
    fn dealer_deals_distinct_cards() {
        for hash in [0u64, 1, 12345, u64::MAX, 0xdead_beef_cafe] {
            let mut hand = deal(hash, 64, 6);
            hand.sort_unstable();
            hand.dedup();
            assert_eq!(hand.len(), 6);
            assert!(hand.iter().all(|c| *c < 64));
        }
        assert_eq!(deal(7, 1, 1), vec![0]);
    }

    #[tokio::test]
    async fn two_flows_share_seats_fairly() {
        // One seat, one queue each (hand 1 of 2, flows chosen to land apart).
        let set = QueueSet::new(cfg(1, 2, 1, 100));
        let (a, b) = (0u64, 1u64);
        assert_ne!(deal(a, 2, 1), deal(b, 2, 1));
        let Admission::Dispatched(first) = set.enqueue(a, 1) else {
            panic!("a free seat dispatches at once");
        };
        // Flow a queues 10 requests, then flow b queues 3.
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut tasks = Vec::new();
        for (flow, n) in [(a, 10), (b, 3)] {
            for i in 0..n {
                let Admission::Queued(ticket) = set.enqueue(flow, 1) else {
                    panic!("queued");
                };
                let order = order.clone();
                tasks.push(tokio::spawn(async move {
                    let seat = ticket
                        .wait(Duration::from_secs(5))
                        .await
                        .expect("dispatched");
                    order
                        .lock()
                        .unwrap()
                        .push((if flow == a { 'a' } else { 'b' }, i));
                    tokio::task::yield_now().await;
                    drop(seat);
                }));
            }
        }
        assert_eq!(set.counts(), (1, 13));
        drop(first);
        for t in tasks {
            t.await.unwrap();
        }
        let order = order.lock().unwrap().clone();
        // b's three requests are not stuck behind a's ten: they alternate.
        let b_positions: Vec<usize> = order
            .iter()
            .enumerate()
            .filter(|(_, (f, _))| *f == 'b')
            .map(|(i, _)| i)
            .collect();
        assert!(b_positions.iter().all(|p| *p < 7), "{order:?}");
        assert_eq!(set.counts(), (0, 0));
    }

    #[tokio::test]
    async fn full_queues_reject_and_timeouts_leave() {
        let set = QueueSet::new(cfg(1, 1, 1, 2));
        let Admission::Dispatched(seat) = set.enqueue(9, 1) else {
            panic!("dispatched")
        };
        let Admission::Queued(t1) = set.enqueue(9, 1) else {
            panic!("queued")
        };
        let Admission::Queued(t2) = set.enqueue(9, 1) else {
            panic!("queued")
        };
        assert!(
            matches!(set.enqueue(9, 1), Admission::Rejected),
            "queue full"
        );
        assert_eq!(set.counts(), (1, 2));
        // A request that waits too long leaves its queue.
        assert!(t1.wait(Duration::from_millis(20)).await.is_none());
        assert_eq!(set.counts(), (1, 1));
        drop(seat);
        let s2 = t2.wait(Duration::from_secs(1)).await.expect("dispatched");
        assert_eq!(set.counts(), (1, 0));
        drop(s2);
        assert_eq!(set.counts(), (0, 0));
        // Reject-only levels (catch-all) never queue.
        let reject = QueueSet::new(cfg(1, 0, 0, 0));
        let Admission::Dispatched(s) = reject.enqueue(1, 1) else {
            panic!("dispatched")
        };
        assert!(matches!(reject.enqueue(1, 1), Admission::Rejected));
        drop(s);
        assert!(matches!(reject.enqueue(1, 1), Admission::Dispatched(_)));
    }

    #[tokio::test]
    async fn a_wide_request_waits_for_its_seats_and_holds_them() {
        let set = QueueSet::new(cfg(10, 1, 1, 10));
        let Admission::Dispatched(narrow) = set.enqueue(1, 1) else {
            panic!("dispatched")
        };
        let Admission::Dispatched(wide) = set.enqueue(2, 8) else {
            panic!("9 of 10 seats")
        };
        assert_eq!(set.counts(), (9, 0));
        // Another wide one does not fit; a narrow one queued behind it does not pass it.
        let Admission::Queued(second) = set.enqueue(3, 8) else {
            panic!("queued")
        };
        let Admission::Queued(small) = set.enqueue(3, 1) else {
            panic!("queued behind the head")
        };
        drop(narrow);
        assert_eq!(set.counts(), (8, 2), "8 seats busy, nothing fits yet");
        drop(wide);
        let second = second.wait(Duration::from_secs(1)).await.expect("fits now");
        let small = small.wait(Duration::from_secs(1)).await.expect("fits too");
        assert_eq!(set.counts(), (9, 0));
        drop((second, small));
        // Wider than the level: clamped to all of it.
        let Admission::Dispatched(all) = set.enqueue(4, 50) else {
            panic!("dispatched")
        };
        assert_eq!(set.counts(), (10, 0));
        drop(all);
        assert_eq!(set.counts(), (0, 0));
    }
}
