//! The writer thread's command queue: a deque under a mutex and a condvar,
//! where a sender wakes the writer only when the writer wants it woken.
//!
//! Why not `std::sync::mpsc`: while a small group commit waits for company
//! (the commit delay), a channel wakes the writer for every command sent,
//! only for it to take the command and sleep again. At 10,000 records/s in
//! 1,600 client frames that was about 2,400 thread wake-ups a second, and
//! each wake-up also cost the sending task a `futex` call: most of the spool
//! writer's CPU. Here a waiting writer says what it waits for: any command
//! (it is idle), or, while lingering, only a command that must not wait
//! ([`Queued::urgent`]) or enough append bytes to end the wait. Everything
//! else is queued without a wake-up and taken when the wait ends.

use std::collections::VecDeque;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::Instant;

/// What the queue needs to know of a command.
pub(crate) trait Queued {
    /// Frame bytes it appends (0 for anything but an append).
    fn append_bytes(&self) -> u64;
    /// Whether a lingering writer must act on it at once.
    fn urgent(&self) -> bool;
}

/// What the writer is blocked on, if anything.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Waiting {
    No,
    /// Idle: any command wakes it.
    ForAny,
    /// Lingering: an urgent command, or queued appends of at least this
    /// many bytes, wake it.
    ForUrgentOr {
        append_bytes: u64,
    },
}

struct State<T> {
    commands: VecDeque<T>,
    /// Frame bytes of the appends in `commands`.
    append_bytes: u64,
    waiting: Waiting,
    /// The sending side is gone: no command will come any more.
    senders_gone: bool,
    /// The writer is gone: sends fail.
    receiver_gone: bool,
    /// Wake-ups sent, for tests.
    #[cfg(test)]
    wakes: u64,
}

struct Queue<T> {
    state: Mutex<State<T>>,
    wake: Condvar,
}

impl<T> Queue<T> {
    fn lock(&self) -> MutexGuard<'_, State<T>> {
        // A panic while holding the lock leaves the deque consistent.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The sending side (one, owned by the spool handle). Dropping it lets the
/// writer finish what is queued and stop.
pub(crate) struct Sender<T>(Arc<Queue<T>>);

/// The writer's side. Dropping it fails later sends, and drops the commands
/// still queued, so that their callers see their reply channels close.
pub(crate) struct Receiver<T>(Arc<Queue<T>>);

/// The sent command, back: the writer is gone.
#[derive(Debug)]
pub(crate) struct Gone<T>(pub T);

/// What [`Receiver::recv`] found.
pub(crate) enum Received<T> {
    Command(T),
    /// The deadline passed with nothing queued.
    Timeout,
    /// Nothing is queued and the sender is gone.
    Disconnected,
}

pub(crate) fn queue<T: Queued>() -> (Sender<T>, Receiver<T>) {
    let queue = Arc::new(Queue {
        state: Mutex::new(State {
            commands: VecDeque::new(),
            append_bytes: 0,
            waiting: Waiting::No,
            senders_gone: false,
            receiver_gone: false,
            #[cfg(test)]
            wakes: 0,
        }),
        wake: Condvar::new(),
    });
    (Sender(Arc::clone(&queue)), Receiver(queue))
}

impl<T: Queued> Sender<T> {
    pub(crate) fn send(&self, command: T) -> Result<(), Gone<T>> {
        let mut state = self.0.lock();
        if state.receiver_gone {
            return Err(Gone(command));
        }
        state.append_bytes += command.append_bytes();
        let wake = match state.waiting {
            Waiting::No => false,
            Waiting::ForAny => true,
            Waiting::ForUrgentOr { append_bytes } => {
                command.urgent() || state.append_bytes >= append_bytes
            }
        };
        state.commands.push_back(command);
        if wake {
            state.waiting = Waiting::No;
            #[cfg(test)]
            {
                state.wakes += 1;
            }
            drop(state);
            self.0.wake.notify_one();
        }
        Ok(())
    }
}

impl<T> Drop for Sender<T> {
    fn drop(&mut self) {
        self.0.lock().senders_gone = true;
        self.0.wake.notify_one();
    }
}

impl<T: Queued> Receiver<T> {
    /// The next command, waiting for one until `deadline` (for ever without
    /// one).
    pub(crate) fn recv(&self, deadline: Option<Instant>) -> Received<T> {
        let mut state = self.0.lock();
        loop {
            if let Some(command) = pop(&mut state) {
                return Received::Command(command);
            }
            if state.senders_gone {
                return Received::Disconnected;
            }
            state.waiting = Waiting::ForAny;
            state = match deadline {
                None => self.0.wake.wait(state).unwrap_or_else(|p| p.into_inner()),
                Some(deadline) => {
                    let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                        state.waiting = Waiting::No;
                        return Received::Timeout;
                    };
                    let (state, _) = self
                        .0
                        .wake
                        .wait_timeout(state, left)
                        .unwrap_or_else(|p| p.into_inner());
                    state
                }
            };
            state.waiting = Waiting::No;
        }
    }

    /// Waits until `deadline`, or until an urgent command is queued, or the
    /// queued appends come to `append_bytes`, or the sender is gone. Takes
    /// nothing: [`Receiver::take`] does.
    pub(crate) fn linger(&self, deadline: Instant, append_bytes: u64) {
        let mut state = self.0.lock();
        loop {
            let done = state.senders_gone
                || state.append_bytes >= append_bytes
                || state.commands.iter().any(Queued::urgent);
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                break;
            };
            if done || left.is_zero() {
                break;
            }
            state.waiting = Waiting::ForUrgentOr { append_bytes };
            state = self
                .0
                .wake
                .wait_timeout(state, left)
                .unwrap_or_else(|p| p.into_inner())
                .0;
        }
        state.waiting = Waiting::No;
    }

    /// Moves queued commands into `batch` while `bytes` (the batch's append
    /// bytes, updated) is below `max_bytes`.
    pub(crate) fn take(&self, batch: &mut Vec<T>, bytes: &mut u64, max_bytes: u64) {
        let mut state = self.0.lock();
        while *bytes < max_bytes {
            let Some(command) = pop(&mut state) else {
                break;
            };
            *bytes += command.append_bytes();
            batch.push(command);
        }
    }
}

fn pop<T: Queued>(state: &mut State<T>) -> Option<T> {
    let command = state.commands.pop_front()?;
    state.append_bytes -= command.append_bytes();
    Some(command)
}

impl<T> Drop for Receiver<T> {
    fn drop(&mut self) {
        let queued = {
            let mut state = self.0.lock();
            state.receiver_gone = true;
            std::mem::take(&mut state.commands)
        };
        // Dropped outside the lock: dropping a command wakes its caller.
        drop(queued);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    #[derive(Debug, PartialEq)]
    enum Cmd {
        Append(u64),
        Other,
        Urgent,
    }

    impl Queued for Cmd {
        fn append_bytes(&self) -> u64 {
            match self {
                Cmd::Append(n) => *n,
                _ => 0,
            }
        }
        fn urgent(&self) -> bool {
            matches!(self, Cmd::Urgent)
        }
    }

    fn wakes(receiver: &Receiver<Cmd>) -> u64 {
        receiver.0.lock().wakes
    }

    /// Blocks until the writer side waits as `waiting`.
    fn until_waiting(receiver: &Receiver<Cmd>, waiting: Waiting) {
        while receiver.0.lock().waiting != waiting {
            std::thread::yield_now();
        }
    }

    #[test]
    fn an_idle_writer_is_woken_by_any_command_and_gets_them_in_order() {
        let (sender, receiver) = queue();
        std::thread::scope(|s| {
            let got = s.spawn(|| {
                let mut got = Vec::new();
                for _ in 0..3 {
                    match receiver.recv(None) {
                        Received::Command(c) => got.push(c),
                        _ => panic!("a command was sent"),
                    }
                }
                got
            });
            until_waiting(&receiver, Waiting::ForAny);
            sender.send(Cmd::Other).unwrap();
            sender.send(Cmd::Append(5)).unwrap();
            sender.send(Cmd::Urgent).unwrap();
            assert_eq!(
                got.join().unwrap(),
                [Cmd::Other, Cmd::Append(5), Cmd::Urgent]
            );
        });
    }

    /// A writer lingers up to `linger_for` for 1,000 bytes while 900 bytes of
    /// appends and then `last` are sent; returns once the linger is over.
    fn linger_while_sending(linger_for: Duration, last: Cmd) -> Receiver<Cmd> {
        let (sender, receiver) = queue();
        std::thread::scope(|s| {
            let lingering = s.spawn(|| receiver.linger(Instant::now() + linger_for, 1_000));
            until_waiting(
                &receiver,
                Waiting::ForUrgentOr {
                    append_bytes: 1_000,
                },
            );
            for _ in 0..9 {
                sender.send(Cmd::Append(100)).unwrap();
            }
            sender.send(last).unwrap();
            lingering.join().unwrap();
        });
        receiver
    }

    #[test]
    fn a_lingering_writer_is_not_woken_by_small_appends_or_other_commands() {
        let receiver = linger_while_sending(Duration::from_millis(200), Cmd::Other);
        assert_eq!(wakes(&receiver), 0, "900 bytes and a plain command woke it");
        let (mut batch, mut bytes) = (Vec::new(), 0);
        receiver.take(&mut batch, &mut bytes, u64::MAX);
        assert_eq!(batch.len(), 10);
        assert_eq!(bytes, 900);
    }

    #[test]
    fn a_lingering_writer_is_woken_by_enough_bytes_or_an_urgent_command() {
        for last in [Cmd::Append(100), Cmd::Urgent] {
            // Far longer than the test: only a wake-up ends it.
            let receiver = linger_while_sending(Duration::from_secs(600), last);
            assert_eq!(wakes(&receiver), 1);
        }
    }

    #[test]
    fn a_linger_ends_at_once_when_what_it_waits_for_is_already_queued() {
        let (sender, receiver) = queue();
        sender.send(Cmd::Urgent).unwrap();
        receiver.linger(Instant::now() + Duration::from_secs(600), 1_000);
        let (sender2, receiver2) = queue();
        sender2.send(Cmd::Append(1_000)).unwrap();
        receiver2.linger(Instant::now() + Duration::from_secs(600), 1_000);
        drop(sender);
        drop(sender2);
    }

    #[test]
    fn take_stops_once_the_batch_is_big_enough() {
        let (sender, receiver) = queue();
        for _ in 0..5 {
            sender.send(Cmd::Append(400)).unwrap();
        }
        let (mut batch, mut bytes) = (vec![Cmd::Append(400)], 400);
        receiver.take(&mut batch, &mut bytes, 1_000);
        assert_eq!((batch.len(), bytes), (3, 1_200));
        assert_eq!(receiver.0.lock().append_bytes, 1_200);
        receiver.take(&mut batch, &mut bytes, u64::MAX);
        assert_eq!((batch.len(), bytes), (6, 2_400));
    }

    #[test]
    fn the_writer_sees_the_sender_go_after_what_it_queued() {
        let (sender, receiver) = queue();
        sender.send(Cmd::Other).unwrap();
        drop(sender);
        assert!(matches!(receiver.recv(None), Received::Command(Cmd::Other)));
        assert!(matches!(receiver.recv(None), Received::Disconnected));
        // A writer waiting when the sender goes is woken.
        let (sender, receiver) = queue::<Cmd>();
        std::thread::scope(|s| {
            let waiting = s.spawn(|| matches!(receiver.recv(None), Received::Disconnected));
            until_waiting(&receiver, Waiting::ForAny);
            drop(sender);
            assert!(waiting.join().unwrap());
        });
    }

    #[test]
    fn recv_times_out_at_its_deadline_with_nothing_queued() {
        let (_sender, receiver) = queue::<Cmd>();
        let deadline = Instant::now() + Duration::from_millis(20);
        assert!(matches!(receiver.recv(Some(deadline)), Received::Timeout));
        assert!(Instant::now() >= deadline);
    }

    #[test]
    fn sends_fail_once_the_writer_is_gone_and_queued_commands_are_dropped() {
        #[derive(Debug)]
        struct WithReply(#[allow(dead_code)] tokio::sync::oneshot::Sender<()>);
        impl Queued for WithReply {
            fn append_bytes(&self) -> u64 {
                0
            }
            fn urgent(&self) -> bool {
                false
            }
        }
        let (sender, receiver) = queue();
        let (reply, answer) = tokio::sync::oneshot::channel();
        sender.send(WithReply(reply)).unwrap();
        drop(receiver);
        // The queued command's caller hears the writer is gone.
        assert!(answer.blocking_recv().is_err());
        let (reply, _answer) = tokio::sync::oneshot::channel();
        assert!(sender.send(WithReply(reply)).is_err());
    }
}
