//! `#[cancellable]` on sync functions: every loop kind, nested and labelled loops, the value
//! returned for each supported return type, methods and trait impls, generics, the arguments,
//! cancellation before the start and from another thread, and where the rewrite stops.

use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc;
use std::time::Duration;

use ctx::{CancelHandle, Context, Error, FromCancel, cancellable};

mod support;
use support::{done, live};

// ---------------------------------------------------------------------------------------------
// Each loop kind stops at the top of the iteration after the cancel.

#[cancellable]
fn count_loop(ctx: &Context, cancel: &CancelHandle, stop_at: u32, seen: &Cell<u32>) -> Option<u32> {
    let mut n = 0;
    loop {
        n += 1;
        seen.set(n);
        if n == stop_at {
            cancel.cancel();
        }
        if n == 100 {
            break Some(n);
        }
    }
}

#[test]
fn loop_stops_after_the_iteration_that_cancelled() {
    let (ctx, cancel) = live();
    let seen = Cell::new(0);
    assert_eq!(count_loop(&ctx, &cancel, 3, &seen), None);
    assert_eq!(seen.get(), 3);
}

#[test]
fn loop_runs_to_its_end_when_never_cancelled() {
    let (ctx, cancel) = live();
    let seen = Cell::new(0);
    assert_eq!(count_loop(&ctx, &cancel, 0, &seen), Some(100));
    assert_eq!(seen.get(), 100);
}

#[cancellable]
fn count_while(ctx: &Context, cancel: &CancelHandle, stop_at: u32) -> Result<u32, Error> {
    let mut n = 0;
    while n < 100 {
        n += 1;
        if n == stop_at {
            cancel.cancel();
        }
    }
    Ok(n)
}

#[test]
fn while_stops_and_returns_err() {
    let (ctx, cancel) = live();
    assert_eq!(count_while(&ctx, &cancel, 5), Err(Error::Canceled));
    let (ctx, cancel) = live();
    assert_eq!(count_while(&ctx, &cancel, 0), Ok(100));
}

#[cancellable(on_cancel = u32::MAX)]
fn pop_all(ctx: &Context, cancel: &CancelHandle, queue: &mut Vec<u32>, stop_after: u32) -> u32 {
    let mut popped = 0;
    while let Some(_job) = queue.pop() {
        popped += 1;
        if popped == stop_after {
            cancel.cancel();
        }
    }
    popped
}

#[test]
fn while_let_checks_before_the_condition_so_no_item_is_lost() {
    let (ctx, cancel) = live();
    let mut queue = vec![1, 2, 3, 4, 5];
    // Cancelled while handling the second job: the check runs before the next `pop`.
    assert_eq!(pop_all(&ctx, &cancel, &mut queue, 2), u32::MAX);
    assert_eq!(queue, [1, 2, 3]);

    let (ctx, cancel) = live();
    let mut queue = vec![1, 2, 3];
    assert_eq!(pop_all(&ctx, &cancel, &mut queue, 0), 3);
    assert!(queue.is_empty());
}

#[cancellable]
fn sum_for(ctx: &Context, cancel: &CancelHandle, items: &[u32], stop_at: u32) -> Option<u32> {
    let mut sum = 0;
    for item in items {
        sum += item;
        if *item == stop_at {
            cancel.cancel();
        }
    }
    Some(sum)
}

#[test]
fn for_stops_at_the_next_item() {
    let (ctx, cancel) = live();
    assert_eq!(sum_for(&ctx, &cancel, &[1, 2, 3, 4], 2), None);
    let (ctx, cancel) = live();
    assert_eq!(sum_for(&ctx, &cancel, &[1, 2, 3, 4], 0), Some(10));
}

// ---------------------------------------------------------------------------------------------
// Nested and labelled loops keep their meaning.

#[cancellable]
fn labelled(ctx: &Context, rows: &[&[i32]]) -> Option<(i32, i32)> {
    let mut sum = 0;
    'rows: for row in rows {
        for &cell in *row {
            if cell < 0 {
                continue 'rows;
            }
            sum += cell;
        }
    }
    let mut i = 0;
    let found = 'outer: loop {
        loop {
            i += 1;
            if i % 7 == 0 {
                break 'outer i;
            }
            if i % 3 == 0 {
                break;
            }
        }
    };
    let mut n = 0;
    let first_over = loop {
        n += 5;
        if n > 12 {
            break n;
        }
    };
    Some((sum + found, first_over))
}

#[test]
fn labels_continue_outer_and_break_with_value_work() {
    let (ctx, _cancel) = live();
    // sum: 1 + 2 (row 1 stops at -1) + 4 + 5 = 12; found = 7; first_over = 15.
    assert_eq!(labelled(&ctx, &[&[1, 2, -1, 9], &[4, 5]]), Some((19, 15)));
}

#[cancellable]
fn nested(ctx: &Context, cancel: &CancelHandle, inner_rounds: &Cell<u32>) -> Option<u32> {
    for _ in 0..10 {
        for j in 0..10 {
            inner_rounds.set(inner_rounds.get() + 1);
            if j == 4 {
                cancel.cancel();
            }
        }
    }
    Some(inner_rounds.get())
}

#[test]
fn the_inner_loop_stops_too() {
    let (ctx, cancel) = live();
    let rounds = Cell::new(0);
    assert_eq!(nested(&ctx, &cancel, &rounds), None);
    assert_eq!(rounds.get(), 5);
}

// ---------------------------------------------------------------------------------------------
// The value returned on cancellation.

#[cancellable]
fn unit(ctx: &Context, ran: &Cell<bool>) {
    ran.set(true);
}

#[cancellable]
fn option(ctx: &Context) -> Option<&'static str> {
    Some("ran")
}

#[cancellable]
fn result_ctx_error(ctx: &Context) -> Result<u8, Error> {
    Ok(1)
}

#[cancellable]
fn result_io_error(ctx: &Context) -> std::io::Result<u8> {
    Ok(1)
}

#[derive(Debug, PartialEq)]
enum Outcome {
    Done(u8),
    Stopped(Error),
}

impl FromCancel for Outcome {
    fn from_cancel(err: Error) -> Outcome {
        Outcome::Stopped(err)
    }
}

#[cancellable]
fn custom(ctx: &Context) -> Outcome {
    Outcome::Done(1)
}

#[test]
fn default_values_for_every_supported_type() {
    let ran = Cell::new(false);
    unit(&done(), &ran);
    assert!(!ran.get());
    unit(&Context::background(), &ran);
    assert!(ran.get());

    assert_eq!(option(&done()), None);
    assert_eq!(option(&Context::background()), Some("ran"));
    assert_eq!(result_ctx_error(&done()), Err(Error::Canceled));
    assert_eq!(result_io_error(&done()).unwrap_err().kind(), std::io::ErrorKind::Interrupted);
    assert_eq!(result_io_error(&Context::background()).unwrap(), 1);
    assert_eq!(custom(&done()), Outcome::Stopped(Error::Canceled));
    assert_eq!(custom(&Context::background()), Outcome::Done(1));
}

#[test]
fn a_deadline_gives_deadline_exceeded() {
    let (ctx, _guard) = Context::background().with_timeout(Duration::ZERO);
    while !ctx.is_done() {
        std::thread::yield_now();
    }
    assert_eq!(result_ctx_error(&ctx), Err(Error::DeadlineExceeded));
    assert_eq!(custom(&ctx), Outcome::Stopped(Error::DeadlineExceeded));
}

// ---------------------------------------------------------------------------------------------
// `on_cancel`: uses the parameters, is evaluated once, and never sees the body's locals.

#[cancellable(on_cancel = format!("{name} stopped after {}", progress.get()))]
fn named(ctx: &Context, cancel: &CancelHandle, name: &str, progress: &Cell<u32>) -> String {
    let name = "a local that shadows the parameter";
    loop {
        progress.set(progress.get() + 1);
        if progress.get() == 4 {
            cancel.cancel();
        }
        if progress.get() > 100 {
            return name.to_string();
        }
    }
}

#[test]
fn on_cancel_uses_the_parameters_not_the_bodys_locals() {
    let (ctx, cancel) = live();
    let progress = Cell::new(0);
    assert_eq!(named(&ctx, &cancel, "worker", &progress), "worker stopped after 4");
}

#[cancellable(on_cancel = { calls.set(calls.get() + 1); calls.get() })]
fn counted(ctx: &Context, calls: &Cell<u32>) -> u32 {
    for _ in 0..3 {
        for _ in 0..3 {}
    }
    0
}

#[test]
fn on_cancel_is_evaluated_once_and_only_on_cancellation() {
    let calls = Cell::new(0);
    assert_eq!(counted(&Context::background(), &calls), 0);
    assert_eq!(calls.get(), 0);
    assert_eq!(counted(&done(), &calls), 1);
    assert_eq!(calls.get(), 1);
}

// ---------------------------------------------------------------------------------------------
// Finding the context: by type (`Context`, `&Context`, `&mut Context`, a full path) or by
// `ctx = <expr>`; it is evaluated once, and the body may move or re-borrow it.

#[cancellable]
fn by_value(ctx: Context, handed_over: &mpsc::Sender<Context>) -> Option<()> {
    // Moving the context out of the parameter is fine: the function holds its own handle.
    handed_over.send(ctx).unwrap();
    loop {
        std::thread::yield_now();
    }
}

#[test]
fn the_body_may_move_the_context() {
    let (ctx, cancel) = live();
    let (tx, rx) = mpsc::channel();
    let worker = std::thread::spawn(move || by_value(ctx, &tx));
    let moved = rx.recv().unwrap();
    cancel.cancel();
    assert_eq!(worker.join().unwrap(), None);
    assert!(moved.is_done());
}

#[cancellable]
fn by_mut_ref(ctx: &mut Context, cancel: &CancelHandle) -> Option<u32> {
    // Re-borrowing the context mutably (here: replacing it) is fine too; the checks keep using
    // the context the function was called with.
    *ctx = Context::background();
    cancel.cancel();
    let mut n = 0;
    while n < 10 {
        n += 1;
    }
    Some(n)
}

#[test]
fn a_mut_reference_can_be_reborrowed_and_the_check_uses_the_value_at_entry() {
    let (mut ctx, cancel) = live();
    assert_eq!(by_mut_ref(&mut ctx, &cancel), None);
    assert!(!ctx.is_done(), "the body replaced the caller's context");
}

#[cancellable]
fn full_path(ctx: &::ctx::Context) -> Option<()> {
    Some(())
}

#[test]
fn a_full_path_to_context_is_found() {
    assert_eq!(full_path(&done()), None);
}

struct Counter<'a> {
    calls: &'a Cell<u32>,
    ctx: Context,
}

impl Counter<'_> {
    fn context(&self) -> &Context {
        self.calls.set(self.calls.get() + 1);
        &self.ctx
    }

    #[cancellable(ctx = self.context())]
    fn spin(&self, rounds: u32) -> Option<u32> {
        let mut n = 0;
        while n < rounds {
            n += 1;
        }
        Some(n)
    }
}

#[test]
fn an_explicit_context_expression_is_evaluated_once() {
    let calls = Cell::new(0);
    let counter = Counter { calls: &calls, ctx: Context::background() };
    assert_eq!(counter.spin(50), Some(50));
    assert_eq!(calls.get(), 1);
}

#[cancellable(ctx = second)]
fn two_contexts(first: &Context, second: &Context) -> Option<()> {
    let _ = first;
    Some(())
}

#[test]
fn ctx_picks_one_of_two_contexts() {
    assert_eq!(two_contexts(&done(), &Context::background()), Some(()));
    assert_eq!(two_contexts(&Context::background(), &done()), None);
}

// ---------------------------------------------------------------------------------------------
// Methods (`self`, `&self`, `&mut self`), trait impls, generics, `impl Trait`, lifetimes.

struct Worker {
    ctx: Context,
    ticks: u32,
    stopped: u32,
}

impl Worker {
    #[cancellable(ctx = self.ctx, on_cancel = self.stopped += 1)]
    fn run(&mut self, until: u32) {
        while self.ticks < until {
            self.ticks += 1;
        }
    }

    #[cancellable(ctx = self.ctx)]
    fn ticks(&self) -> Option<u32> {
        Some(self.ticks)
    }

    #[cancellable(ctx = self.ctx, on_cancel = self.stopped)]
    fn into_ticks(self) -> u32 {
        self.ticks
    }

    #[cancellable]
    fn with_param(&self, ctx: &Context) -> Option<u32> {
        Some(self.ticks)
    }
}

#[test]
fn methods_on_self_ref_and_mut() {
    let mut worker = Worker { ctx: Context::background(), ticks: 0, stopped: 0 };
    worker.run(10);
    assert_eq!((worker.ticks, worker.stopped), (10, 0));
    assert_eq!(worker.ticks(), Some(10));
    assert_eq!(worker.with_param(&done()), None);

    worker.ctx = done();
    worker.run(20);
    assert_eq!((worker.ticks, worker.stopped), (10, 1));
    assert_eq!(worker.ticks(), None);
    assert_eq!(worker.into_ticks(), 1);
}

trait Job {
    fn work(&self, ctx: &Context, rounds: u32) -> Result<u32, Error>;
}

struct Doubler;

impl Job for Doubler {
    #[cancellable]
    fn work(&self, ctx: &Context, rounds: u32) -> Result<u32, Error> {
        let mut value = 1u32;
        for _ in 0..rounds {
            value = value.wrapping_mul(2);
        }
        Ok(value)
    }
}

#[test]
fn trait_impl_methods() {
    let job: &dyn Job = &Doubler;
    assert_eq!(job.work(&Context::background(), 3), Ok(8));
    assert_eq!(job.work(&done(), 3), Err(Error::Canceled));
}

#[cancellable]
fn longest<'a, T>(ctx: &Context, items: &'a [T], key: impl Fn(&T) -> usize) -> Option<&'a T>
where
    T: std::fmt::Debug,
{
    let mut best: Option<&'a T> = None;
    for item in items {
        if best.is_none_or(|best| key(item) > key(best)) {
            best = Some(item);
        }
    }
    best
}

#[cancellable(on_cancel = Vec::new().into_iter())]
fn evens<I>(ctx: &Context, items: I) -> impl Iterator<Item = u32> + use<I>
where
    I: IntoIterator<Item = u32>,
{
    let mut kept = Vec::new();
    for item in items {
        if item % 2 == 0 {
            kept.push(item);
        }
    }
    kept.into_iter()
}

#[test]
fn generics_where_clauses_impl_trait_and_lifetimes() {
    let words = ["a", "abc", "ab"];
    assert_eq!(longest(&Context::background(), &words, |w| w.len()), Some(&"abc"));
    assert_eq!(longest(&done(), &words, |w| w.len()), None);
    assert_eq!(evens(&Context::background(), 1..=6).collect::<Vec<_>>(), [2, 4, 6]);
    assert_eq!(evens(&done(), 1..=6).count(), 0);
}

// ---------------------------------------------------------------------------------------------
// `crate = path` for a renamed facade.

mod renamed {
    pub use ::ctx as facade;
}

#[cancellable(crate = renamed::facade)]
fn through_renamed(ctx: &renamed::facade::Context) -> Option<()> {
    Some(())
}

#[test]
fn crate_argument_names_the_facade() {
    assert_eq!(through_renamed(&done()), None);
    assert_eq!(through_renamed(&Context::background()), Some(()));
}

// ---------------------------------------------------------------------------------------------
// Cancellation before the start and from another thread.

#[cancellable]
fn side_effect(ctx: &Context, hits: &Cell<u32>) -> Option<()> {
    hits.set(hits.get() + 1);
    Some(())
}

#[test]
fn a_done_context_does_not_run_the_body_at_all() {
    let hits = Cell::new(0);
    assert_eq!(side_effect(&done(), &hits), None);
    assert_eq!(hits.get(), 0);
    assert_eq!(side_effect(&Context::background(), &hits), Some(()));
    assert_eq!(hits.get(), 1);
}

#[cancellable(on_cancel = rounds.load(Ordering::Relaxed))]
fn spin_forever(ctx: &Context, rounds: &AtomicU64) -> u64 {
    loop {
        rounds.fetch_add(1, Ordering::Relaxed);
    }
}

#[test]
fn a_cancel_from_another_thread_stops_a_busy_loop() {
    let (ctx, cancel) = live();
    let rounds = std::sync::Arc::new(AtomicU64::new(0));
    let (finished_tx, finished) = mpsc::channel();
    let worker_rounds = rounds.clone();
    std::thread::spawn(move || finished_tx.send(spin_forever(&ctx, &worker_rounds)).unwrap());
    while rounds.load(Ordering::Relaxed) == 0 {
        std::thread::yield_now();
    }
    cancel.cancel();
    // Generous: the point is that it stops at all.
    let stopped_at = finished.recv_timeout(Duration::from_secs(10)).expect("the loop stops");
    assert!(stopped_at > 0);
}

// ---------------------------------------------------------------------------------------------
// Where the rewrite stops: closures, nested items and macro invocations are left alone.

macro_rules! count_to {
    ($n:expr, $counter:expr) => {
        for _ in 0..$n {
            $counter.set($counter.get() + 1);
        }
    };
}

#[cancellable]
fn stops_here(ctx: &Context, cancel: &CancelHandle, counter: &Cell<u32>) -> Option<()> {
    cancel.cancel();
    // A closure is a body of its own: its loop is not checked (it could run after we return).
    let in_closure = || {
        let mut n = 0;
        while n < 3 {
            n += 1;
        }
        n
    };
    counter.set(in_closure());
    // A nested function is another function.
    fn nested(counter: &Cell<u32>) {
        for _ in 0..3 {
            counter.set(counter.get() + 1);
        }
    }
    nested(counter);
    // A macro's loop is not visible to the attribute.
    count_to!(3, counter);
    // The first loop of the function's own body stops it.
    loop {
        counter.set(counter.get() + 100);
    }
}

#[test]
fn closures_nested_items_and_macros_are_not_rewritten() {
    let (ctx, cancel) = live();
    let counter = Cell::new(0);
    assert_eq!(stops_here(&ctx, &cancel, &counter), None);
    assert_eq!(counter.get(), 9);
}

#[cancellable]
fn marked(ctx: &Context, cancel: &CancelHandle) -> Option<u32> {
    cancel.cancel();
    #[not_cancellable]
    let n = {
        let mut n = 0;
        while n < 5 {
            n += 1;
        }
        n
    };
    Some(n)
}

#[test]
fn not_cancellable_leaves_a_statement_alone() {
    let (ctx, cancel) = live();
    assert_eq!(marked(&ctx, &cancel), Some(5));
}
