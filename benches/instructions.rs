//! Instruction counts per operation, ours and the peer's, for `scripts/instructions.sh`
//! (BENCHMARKS.md, "Instruction counts").
//!
//! Wall-clock medians drift with whatever else the machine runs; the number of instructions an
//! operation executes does not. This binary runs `n` operations of one kind, each inside a call
//! of a `measured_*` function, and does nothing else worth counting: the script runs it under
//! `valgrind --tool=callgrind --collect-atstart=no --toggle-collect='*measured_*'`, so only the
//! measured calls are counted (building a tree before a cancel, and dropping it after, are not).
//! It runs every operation for `n` and for `2n` and divides the difference by `n`, which removes
//! what a run pays once (first-use allocations, lazily created state).
//!
//! Usage: `instructions <ours|peer> <operation> <n>`, where `operation` is one of
//! - `check`: one `is_done()` / `is_cancelled()` of a live child;
//! - `child:K`: create a child, cancel it, drop it, under a parent with `K` other live children;
//! - `create-drop:K`: create a child and drop it (no cancel), under the same parent;
//! - `wide:K`: cancel a root that has `K` live children (per cancel; divide by `K` per child);
//! - `chain:K`: cancel the root of a chain `K` deep.
//!
//! Without arguments (as `cargo bench` runs it) it runs each operation a few times as a smoke
//! test and prints this usage.

use std::hint::black_box;
use std::process::ExitCode;

use ctx::{CancelHandle, Context};
use tokio_util::sync::CancellationToken;

#[derive(Clone, Copy)]
enum Side {
    Ours,
    Peer,
}

#[derive(Clone, Copy)]
enum Operation {
    Check,
    Child(usize),
    CreateDrop(usize),
    Wide(usize),
    Chain(usize),
}

impl Operation {
    fn parse(text: &str) -> Option<Operation> {
        let (name, size) = match text.split_once(':') {
            Some((name, size)) => (name, Some(size.parse().ok()?)),
            None => (text, None),
        };
        Some(match (name, size) {
            ("check", None) => Operation::Check,
            ("child", Some(k)) => Operation::Child(k),
            ("create-drop", Some(k)) => Operation::CreateDrop(k),
            ("wide", Some(k)) => Operation::Wide(k),
            ("chain", Some(k)) => Operation::Chain(k),
            _ => return None,
        })
    }
}

const USAGE: &str =
    "usage: instructions <ours|peer> <check|child:K|create-drop:K|wide:K|chain:K> <n>
(see scripts/instructions.sh and BENCHMARKS.md)";

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    if args.is_empty() {
        for side in [Side::Ours, Side::Peer] {
            for op in ["check", "child:10", "create-drop:10", "wide:10", "chain:10"] {
                run(side, Operation::parse(op).expect("a valid operation"), 3);
            }
        }
        println!("{USAGE}");
        return ExitCode::SUCCESS;
    }
    let parsed = match args.as_slice() {
        [side, op, n] => {
            let side = match side.as_str() {
                "ours" => Some(Side::Ours),
                "peer" => Some(Side::Peer),
                _ => None,
            };
            side.zip(Operation::parse(op)).zip(n.parse::<usize>().ok())
        }
        _ => None,
    };
    let Some(((side, op), n)) = parsed else {
        eprintln!("{USAGE}");
        return ExitCode::FAILURE;
    };
    run(side, op, n);
    ExitCode::SUCCESS
}

fn run(side: Side, op: Operation, n: usize) {
    match (side, op) {
        (Side::Ours, Operation::Check) => {
            let (root, _handle) = Context::background().with_cancel();
            let (child, _child_handle) = root.with_cancel();
            assert!(!measured_check_ours(&child, n));
        }
        (Side::Peer, Operation::Check) => {
            let child = CancellationToken::new().child_token();
            assert!(!measured_check_peer(&child, n));
        }
        (Side::Ours, Operation::Child(k) | Operation::CreateDrop(k)) => {
            let (parent, _handle) = Context::background().with_cancel();
            let others: Vec<_> = (0..k).map(|_| parent.with_cancel()).collect();
            let cancel = matches!(op, Operation::Child(_));
            measured_child_ours(&parent, n, cancel);
            drop(others);
        }
        (Side::Peer, Operation::Child(k) | Operation::CreateDrop(k)) => {
            let parent = CancellationToken::new();
            let others: Vec<_> = (0..k).map(|_| parent.child_token()).collect();
            let cancel = matches!(op, Operation::Child(_));
            measured_child_peer(&parent, n, cancel);
            drop(others);
        }
        (Side::Ours, Operation::Wide(k)) => {
            for _ in 0..n {
                let (root, handle) = Context::background().with_cancel();
                let children: Vec<_> = (0..k).map(|_| root.with_cancel()).collect();
                measured_cancel_ours(&handle);
                drop(children);
            }
        }
        (Side::Peer, Operation::Wide(k)) => {
            for _ in 0..n {
                let root = CancellationToken::new();
                let children: Vec<_> = (0..k).map(|_| root.child_token()).collect();
                measured_cancel_peer(&root);
                drop(children);
            }
        }
        (Side::Ours, Operation::Chain(k)) => {
            for _ in 0..n {
                let (root, handle) = Context::background().with_cancel();
                let mut chain = Vec::with_capacity(k + 1);
                chain.push(root);
                for _ in 0..k {
                    let (child, _) = chain.last().expect("the root is in").with_cancel();
                    chain.push(child);
                }
                measured_cancel_ours(&handle);
                drop(chain);
            }
        }
        (Side::Peer, Operation::Chain(k)) => {
            for _ in 0..n {
                let root = CancellationToken::new();
                let mut chain = Vec::with_capacity(k + 1);
                chain.push(root.clone());
                for _ in 0..k {
                    let child = chain.last().expect("the root is in").child_token();
                    chain.push(child);
                }
                measured_cancel_peer(&root);
                drop(chain);
            }
        }
    }
}

#[inline(never)]
fn measured_check_ours(ctx: &Context, n: usize) -> bool {
    let mut any = false;
    for _ in 0..n {
        any |= black_box(ctx).is_done();
    }
    any
}

#[inline(never)]
fn measured_check_peer(token: &CancellationToken, n: usize) -> bool {
    let mut any = false;
    for _ in 0..n {
        any |= black_box(token).is_cancelled();
    }
    any
}

#[inline(never)]
fn measured_child_ours(parent: &Context, n: usize, cancel: bool) {
    for _ in 0..n {
        let (child, handle) = black_box(parent).with_cancel();
        if cancel {
            handle.cancel();
        }
        drop(black_box(child));
        drop(handle);
    }
}

#[inline(never)]
fn measured_child_peer(parent: &CancellationToken, n: usize, cancel: bool) {
    for _ in 0..n {
        let child = black_box(parent).child_token();
        if cancel {
            child.cancel();
        }
        drop(black_box(child));
    }
}

#[inline(never)]
fn measured_cancel_ours(handle: &CancelHandle) {
    black_box(handle).cancel();
}

#[inline(never)]
fn measured_cancel_peer(token: &CancellationToken) {
    black_box(token).cancel();
}
