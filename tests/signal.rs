//! `ctx::signal`: registrations that do not pile up, real signals delivered to this process, and
//! real child processes (this test binary run again as a plain-threads program) that get SIGINT,
//! SIGTERM or SIGHUP from `kill(2)` and, on a second signal, die of it.
//!
//! The registry is process-wide, so the tests that count registrations or raise signals hold
//! [`serial`] while they run.
#![cfg(all(unix, feature = "signal"))]

use std::io::{BufRead, BufReader};
use std::os::unix::process::ExitStatusExt;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use ctx::Context;
use ctx::signal::{self, Received, Signal};

/// How long anything here may take before it counts as hung.
const NO_HANG: Duration = Duration::from_secs(30);

fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

fn received(ctx: &Context) -> Option<Received> {
    ctx.cause().and_then(|cause| cause.downcast_ref::<Received>().cloned())
}

#[test]
fn signals_display_their_conventional_names() {
    let names: Vec<String> = [Signal::Interrupt, Signal::Terminate, Signal::Hangup, Signal::Quit]
        .iter()
        .map(ToString::to_string)
        .collect();
    assert_eq!(names, ["SIGINT", "SIGTERM", "SIGHUP", "SIGQUIT"]);
}

#[test]
fn an_empty_list_is_invalid_input() {
    let err = signal::notify(&Context::background(), &[]).unwrap_err();
    assert_eq!(err.kind(), std::io::ErrorKind::InvalidInput);
    assert!(err.to_string().contains("empty"), "{err}");
}

#[test]
fn ten_thousand_dropped_contexts_leave_no_registration_behind() {
    let _serial = serial();
    let before = signal::registrations();
    // Installs the hooks of both signals once.
    drop(signal::notify(&Context::background(), &[Signal::Interrupt, Signal::Terminate]).unwrap());
    let hooks = signal::installed_hooks();
    let (parent, _cancel_parent) = Context::background().with_cancel();
    let mut peak = 0;
    for round in 0..10_000 {
        let (ctx, handle) =
            signal::notify(&parent, &[Signal::Interrupt, Signal::Terminate]).unwrap();
        peak = peak.max(signal::registrations());
        // Every other one keeps a grandchild for a while: the registration must stay until the
        // last context derived from it is gone too.
        if round % 2 == 0 {
            let (child, _child_handle) = ctx.with_cancel();
            drop((ctx, handle));
            assert_eq!(signal::registrations(), before + 1, "the grandchild still listens");
            drop(child);
        }
    }
    assert_eq!(peak, before + 1, "one registration at a time");
    assert_eq!(signal::registrations(), before, "a dropped context leaves its registration");
    assert_eq!(signal::installed_hooks(), hooks, "signal-hook actions are installed once");
    assert!(hooks <= 3 * 4, "3 actions per signal at most: {hooks}");
}

#[test]
fn contexts_done_for_other_reasons_leave_no_registration_behind() {
    let _serial = serial();
    let before = signal::registrations();
    let (parent, cancel_parent) = Context::background().with_cancel();
    let mut kept = Vec::new();
    for _ in 0..1_000 {
        // Cancelled by its handle, kept alive: the registration goes at the cancel.
        let (ctx, handle) = signal::notify(&parent, &[Signal::Hangup]).unwrap();
        handle.cancel();
        kept.push(ctx);
    }
    assert_eq!(signal::registrations(), before);
    // Done by a deadline, on the timer thread: the registration goes right after.
    for _ in 0..100 {
        let (short, _guard) = parent.with_timeout(Duration::from_millis(1));
        kept.push(signal::notify(&short, &[Signal::Hangup]).unwrap().0);
    }
    assert!(kept.iter().all(|ctx| ctx.wait_timeout(NO_HANG)));
    let started = Instant::now();
    while signal::registrations() != before {
        assert!(started.elapsed() < NO_HANG, "{} left", signal::registrations() - before);
        std::thread::yield_now();
    }
    // Cancelled through their parent: every one of them goes at once.
    let listening: Vec<_> =
        (0..1_000).map(|_| signal::notify(&parent, &[Signal::Quit]).unwrap()).collect();
    assert_eq!(signal::registrations(), before + 1_000);
    cancel_parent.cancel();
    assert_eq!(signal::registrations(), before);
    assert!(listening.iter().all(|(ctx, _)| ctx.is_done() && received(ctx).is_none()));
    // A parent that is done already: born done, nothing registered.
    let (ctx, _handle) = signal::notify(&parent, &[Signal::Quit]).unwrap();
    assert!(ctx.is_done());
    assert_eq!(signal::registrations(), before);
}

/// A signal delivered to this process cancels every context that listens to it, and only those.
/// Sent with `kill(2)` (a real delivery, as from another process), waited for on a plain thread.
#[test]
fn a_signal_cancels_every_listener_with_its_cause() {
    let _serial = serial();
    let (first, _h1) = signal::notify(&Context::background(), &[Signal::Hangup]).unwrap();
    let (second, _h2) =
        signal::notify(&Context::background(), &[Signal::Terminate, Signal::Hangup]).unwrap();
    let (other, _h3) = signal::notify(&Context::background(), &[Signal::Quit]).unwrap();
    let derived = first.with_value("request");
    let before = signal::registrations();
    let waiter = {
        let derived = derived.clone();
        std::thread::spawn(move || derived.wait_timeout(NO_HANG))
    };
    send(std::process::id(), "HUP");
    assert!(waiter.join().unwrap(), "SIGHUP did not cancel the context in {NO_HANG:?}");
    for ctx in [&first, &second, &derived] {
        assert!(ctx.wait_timeout(NO_HANG));
        assert_eq!(ctx.err(), Some(ctx::Error::Canceled));
        let received = received(ctx).expect("the cause is `Received`");
        assert_eq!(received.signal(), Signal::Hangup);
        assert_eq!(ctx.cause().unwrap().to_string(), "received SIGHUP");
    }
    assert!(!other.is_done(), "SIGQUIT's listener is not cancelled by SIGHUP");
    assert_eq!(signal::registrations(), before - 2);
}

/// Sends `SIG<name>` to `pid` with `kill(2)`: a real delivery, as from another process.
fn send(pid: u32, name: &str) {
    use rustix::process::{Pid, Signal as Raw, kill_process};
    let signal = match name {
        "INT" => Raw::INT,
        "TERM" => Raw::TERM,
        "HUP" => Raw::HUP,
        other => panic!("no such signal here: {other}"),
    };
    let target = i32::try_from(pid).ok().and_then(Pid::from_raw).expect("a valid pid");
    kill_process(target, signal).unwrap_or_else(|err| panic!("kill -{name} {pid}: {err}"));
}

/// The child side of the process tests: this binary started again by [`start_child`], with
/// `CTX_SIGNAL_CHILD` naming the signals to listen to. It is a plain-threads program: no async
/// runtime anywhere. It prints `child: ready`, blocks until a signal cancels its context,
/// prints the cause, then "cleans up" for far longer than any test waits, so only a second
/// signal can end it.
#[test]
fn child_process() {
    let Ok(names) = std::env::var("CTX_SIGNAL_CHILD") else { return };
    if names == "DROPPED" {
        // 10,000 registrations made and dropped: the process must be back to the defaults.
        for _ in 0..10_000 {
            drop(signal::notify(&Context::background(), &[Signal::Interrupt, Signal::Terminate]));
        }
        println!("child: ready");
        std::thread::sleep(Duration::from_secs(600));
        println!("child: still alive");
        return;
    }
    let signals: Vec<Signal> = names
        .split(',')
        .map(|name| match name {
            "INT" => Signal::Interrupt,
            "TERM" => Signal::Terminate,
            "HUP" => Signal::Hangup,
            other => panic!("unknown signal {other}"),
        })
        .collect();
    let (ctx, _handle) = signal::notify(&Context::background(), &signals).unwrap();
    println!("child: ready");
    ctx.wait();
    println!("child: {}", ctx.cause().unwrap());
    println!("child: cleaning up");
    std::thread::sleep(Duration::from_secs(600));
    println!("child: cleanup finished");
}

/// Starts [`child_process`] listening to `signals`; returns it and a channel of its `child: `
/// lines (without the prefix).
fn start_child(signals: &str) -> (Child, mpsc::Receiver<String>) {
    spawn_child(Command::new(std::env::current_exe().unwrap()), signals)
}

/// [`start_child`], but the child starts with `SIG<ignored>` ignored, as `nohup` (SIGHUP) or a
/// non-interactive shell's background job (SIGINT, SIGQUIT) start a program: `sh` sets the
/// disposition, then `exec`s the test binary in its place (same pid).
fn start_child_ignoring(ignored: &str, signals: &str) -> (Child, mpsc::Receiver<String>) {
    let mut command = Command::new("sh");
    command
        .args(["-c", &format!("trap '' {ignored}; exec \"$0\" \"$@\"")])
        .arg(std::env::current_exe().unwrap());
    spawn_child(command, signals)
}

fn spawn_child(mut command: Command, signals: &str) -> (Child, mpsc::Receiver<String>) {
    let mut child = command
        .args(["--exact", "child_process", "--nocapture", "--test-threads=1"])
        .env("CTX_SIGNAL_CHILD", signals)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the child");
    let stdout = BufReader::new(child.stdout.take().expect("piped"));
    let (lines, receiver) = mpsc::channel();
    std::thread::spawn(move || {
        for line in stdout.lines().map_while(Result::ok) {
            // libtest's "test child_process ... " may precede the first line.
            if let Some((_, line)) = line.split_once("child: ") {
                if lines.send(line.to_owned()).is_err() {
                    break;
                }
            }
        }
    });
    (child, receiver)
}

/// The child's next line, or a failed test (and a killed child) after [`NO_HANG`].
fn next_line(child: &mut Child, lines: &mpsc::Receiver<String>) -> String {
    match lines.recv_timeout(NO_HANG) {
        Ok(line) => line,
        Err(err) => {
            let _ = child.kill();
            let _ = child.wait();
            panic!("no line from the child within {NO_HANG:?} ({err}): killed");
        }
    }
}

/// Waits for the child to exit; kills it and fails after [`NO_HANG`].
fn wait_or_kill(child: &mut Child) -> std::process::ExitStatus {
    let started = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("poll the child") {
            return status;
        }
        if started.elapsed() > NO_HANG {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the child still runs {NO_HANG:?} after the signal that should kill it");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// One signal cancels the child's context with the right cause; a second one, during its slow
/// cleanup, gets the default action: the child is terminated by that signal.
fn first_signal_cancels_second_kills(listen: &str, send_first: &str, cause: &str, raw: i32) {
    let (mut child, lines) = start_child(listen);
    assert_eq!(next_line(&mut child, &lines), "ready");
    send(child.id(), send_first);
    assert_eq!(next_line(&mut child, &lines), cause);
    assert_eq!(next_line(&mut child, &lines), "cleaning up");
    let second = Instant::now();
    send(child.id(), send_first);
    let status = wait_or_kill(&mut child);
    assert_eq!(status.signal(), Some(raw), "terminated by the second signal: {status}");
    eprintln!("{listen}: the second {send_first} killed the child after {:?}", second.elapsed());
}

#[test]
fn a_second_sigint_kills_a_plain_threads_program() {
    first_signal_cancels_second_kills("INT,TERM", "INT", "received SIGINT", 2);
}

#[test]
fn a_second_sigterm_kills_a_plain_threads_program() {
    first_signal_cancels_second_kills("INT,TERM", "TERM", "received SIGTERM", 15);
}

#[test]
fn a_second_sighup_kills_a_plain_threads_program() {
    first_signal_cancels_second_kills("HUP", "HUP", "received SIGHUP", 1);
}

/// After SIGINT has cancelled a context that listened to SIGINT and SIGTERM, neither is
/// listened to any more: SIGTERM too gets its default action.
#[test]
fn once_done_a_context_listens_to_none_of_its_signals() {
    let (mut child, lines) = start_child("INT,TERM");
    assert_eq!(next_line(&mut child, &lines), "ready");
    send(child.id(), "INT");
    assert_eq!(next_line(&mut child, &lines), "received SIGINT");
    assert_eq!(next_line(&mut child, &lines), "cleaning up");
    send(child.id(), "TERM");
    let status = wait_or_kill(&mut child);
    assert_eq!(status.signal(), Some(15), "terminated by SIGTERM: {status}");
}

/// The signal-hook side of "no registration left behind": after 10,000 `notify` contexts were
/// made and dropped, SIGINT does what it does in a program that never called `notify`.
#[test]
fn after_dropped_contexts_the_first_signal_gets_the_default_action() {
    let (mut child, lines) = start_child("DROPPED");
    assert_eq!(next_line(&mut child, &lines), "ready");
    send(child.id(), "INT");
    let status = wait_or_kill(&mut child);
    assert_eq!(status.signal(), Some(2), "terminated by SIGINT: {status}");
}

/// A program started with SIGINT ignored (a background job of a script) gets it back ignored
/// once no context listens: the first SIGINT cancels the listener, the second one does nothing
/// (it does not kill, as the default action would), and SIGTERM, not ignored, still kills.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[test]
fn an_inherited_ignored_signal_stays_ignored_once_no_context_listens() {
    let (mut child, lines) = start_child_ignoring("INT", "INT,TERM");
    assert_eq!(next_line(&mut child, &lines), "ready");
    send(child.id(), "INT");
    assert_eq!(next_line(&mut child, &lines), "received SIGINT");
    assert_eq!(next_line(&mut child, &lines), "cleaning up");
    sigint_is_ignored(child);
}

/// Sends SIGINT, then SIGTERM: the child must die of SIGTERM. Had SIGINT got its default
/// action, the child would die of it first (a pending SIGINT is delivered before a pending
/// SIGTERM).
fn sigint_is_ignored(mut child: Child) {
    send(child.id(), "INT");
    std::thread::sleep(Duration::from_millis(100));
    send(child.id(), "TERM");
    let status = wait_or_kill(&mut child);
    assert_eq!(status.signal(), Some(15), "SIGINT was ignored, SIGTERM killed: {status}");
}

/// The same, with every context dropped before the first SIGINT: it is ignored, as it was
/// before `notify` was ever called.
#[cfg(any(target_os = "linux", target_os = "android"))]
#[test]
fn an_inherited_ignored_signal_stays_ignored_after_dropped_contexts() {
    let (mut child, lines) = start_child_ignoring("INT", "DROPPED");
    assert_eq!(next_line(&mut child, &lines), "ready");
    sigint_is_ignored(child);
}
