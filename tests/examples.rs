//! Runs the examples as processes and checks their output lines and exit status.
//!
//! `cargo test` builds the examples next to the test binaries (`target/<profile>/examples/`),
//! but `cargo test --test examples` does not, and a binary left by an earlier build may be stale.
//! So [`run_example`] first asks cargo to build the example, with this test's profile, features
//! and target directory: a no-op when `cargo test` has just built it. Then it runs the binary with
//! a generous time limit (the point is "it does not hang", not how fast it is).

use std::io::Read;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::time::{Duration, Instant};

/// How long an example may run before it counts as hung.
const NO_HANG: Duration = Duration::from_secs(60);

/// Builds (if needed) and runs `examples/<name>.rs`, returning its output once it exits.
/// Panics if it cannot be built, or if it runs longer than [`NO_HANG`] (it is killed first).
fn run_example(name: &str) -> Output {
    let binary = build_example(name);
    let mut child = Command::new(&binary)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start {}: {err}", binary.display()));
    // Drain both pipes on their own threads so a chatty example cannot block on a full pipe.
    let drain = |pipe: Option<Box<dyn Read + Send>>| {
        std::thread::spawn(move || {
            let mut bytes = Vec::new();
            pipe.expect("piped").read_to_end(&mut bytes).expect("read the example's output");
            bytes
        })
    };
    let stdout = drain(child.stdout.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let stderr = drain(child.stderr.take().map(|p| Box::new(p) as Box<dyn Read + Send>));
    let status = wait_or_kill(&mut child, name, Instant::now());
    Output { status, stdout: stdout.join().unwrap(), stderr: stderr.join().unwrap() }
}

/// Waits for an example started at `started` to exit; kills it and fails the test after
/// [`NO_HANG`].
fn wait_or_kill(
    child: &mut std::process::Child,
    name: &str,
    started: Instant,
) -> std::process::ExitStatus {
    loop {
        if let Some(status) = child.try_wait().expect("poll the example") {
            return status;
        }
        if started.elapsed() > NO_HANG {
            let _ = child.kill();
            let _ = child.wait();
            panic!("example `{name}` still running after {NO_HANG:?}: killed");
        }
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// Asks cargo to build the example the way this test was built, and returns its path.
fn build_example(name: &str) -> PathBuf {
    // This binary is `<target-dir>/<profile-dir>/deps/examples-<hash>`.
    let exe = std::env::current_exe().expect("the test binary's path");
    let profile_dir = exe.parent().and_then(Path::parent).expect("<target-dir>/<profile-dir>");
    let target_dir = profile_dir.parent().expect("<target-dir>");
    let profile = match profile_dir.file_name().and_then(|n| n.to_str()) {
        Some("debug") => "dev",
        Some(other) => other,
        None => panic!("unexpected test binary path {}", exe.display()),
    };
    let features: Vec<&str> = [
        (cfg!(feature = "macros"), "macros"),
        (cfg!(feature = "tokio"), "tokio"),
        (cfg!(feature = "tokio-clock"), "tokio-clock"),
        (cfg!(feature = "signal"), "signal"),
        (cfg!(feature = "tokio-util"), "tokio-util"),
        (cfg!(feature = "http"), "http"),
    ]
    .into_iter()
    .filter_map(|(on, feature)| on.then_some(feature))
    .collect();
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| env!("CARGO").into());
    let output = Command::new(cargo)
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .args(["build", "--quiet", "--package", env!("CARGO_PKG_NAME"), "--example", name])
        .args(["--profile", profile, "--no-default-features", "--features", &features.join(",")])
        .arg("--target-dir")
        .arg(target_dir)
        .output()
        .expect("run cargo");
    assert!(
        output.status.success(),
        "cargo could not build example `{name}`:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let binary =
        profile_dir.join("examples").join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(binary.is_file(), "cargo built `{name}` but it is not at {}", binary.display());
    binary
}

/// The example's stdout as lines, after checking that it exited successfully.
fn lines_of_successful_run(name: &str) -> Vec<String> {
    let output = run_example(name);
    let stdout = String::from_utf8(output.stdout).expect("utf-8 output");
    assert!(
        output.status.success(),
        "example `{name}` failed with {}\nstdout:\n{stdout}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    stdout.lines().map(str::to_owned).collect()
}

#[test]
fn deadline() {
    assert_eq!(
        lines_of_successful_run("deadline"),
        [
            "fast call: ok, 42 rows",
            "slow call: context deadline exceeded",
            "  timeout: true",
            "  cause:   context deadline exceeded",
            "slow call with a cause: context deadline exceeded",
            "  timeout: true",
            "  cause:   inventory service did not answer within 250ms",
            "  budget:  250ms (downcast from the cause)",
        ]
    );
}

#[test]
fn values() {
    assert_eq!(
        lines_of_successful_run("values"),
        [
            "[no request] server started",
            "[req-7] GET /orders",
            "[req-7] load_user: user 1001",
            "[req-7] load_orders: querying orders of user 1001",
            "[req-7] load_orders stopped: context canceled (client closed the connection)",
            "[req-7] cleanup on the request context: context canceled",
            "[req-7] cleanup with without_cancel: lock released",
            "[no request] server still running: true",
        ]
    );
}

#[cfg(feature = "tokio")]
#[test]
fn group() {
    let lines = lines_of_successful_run("group");
    let line_of = |page: usize| {
        let prefix = format!("page {page} ");
        let found: Vec<usize> =
            (0..lines.len()).filter(|&i| lines[i].starts_with(&prefix)).collect();
        assert_eq!(found.len(), 1, "one line for page {page} in {lines:#?}");
        found[0]
    };
    assert_eq!(lines[0], "fetching 12 pages, at most 3 at a time");
    let failure = line_of(5);
    assert_eq!(lines[failure], "page 5 is corrupt (checksum mismatch)");
    // With three at a time, page 5 starts only once pages 0-2 are done; pages 6-11 start after
    // it and need longer than it does before failing. Pages 3 and 4 race the failure.
    for page in 0..3 {
        assert_eq!(lines[line_of(page)], format!("page {page} done: {} bytes", 1000 + 100 * page));
    }
    for page in (3..5).chain(6..12) {
        let line = &lines[line_of(page)];
        let stopped = format!("page {page} stopped: context canceled");
        assert!(
            *line == stopped || (page < 5 && line.starts_with(&format!("page {page} done: "))),
            "unexpected line {line:?}"
        );
    }
    // Nothing finishes after the failure: the cancel reaches every page still running or queued.
    assert!(lines[failure..].iter().all(|line| !line.contains(" done: ")), "{lines:#?}");
    assert_eq!(
        lines[lines.len() - 2..],
        [
            "wait: page 5 is corrupt (checksum mismatch)",
            "cause: task 5 failed: page 5 is corrupt (checksum mismatch)",
        ]
    );
    assert_eq!(lines.len(), 1 + 12 + 2, "{lines:#?}");
}

/// Runs an example, timestamping each stdout line as it arrives. Returns the lines, the exit
/// status and the run's wall time. Killed (and the test failed) after [`NO_HANG`].
fn run_example_timed(name: &str) -> (Vec<(Duration, String)>, std::process::ExitStatus, Duration) {
    use std::io::BufRead;
    let binary = build_example(name);
    let started = Instant::now();
    let mut child = Command::new(&binary)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|err| panic!("cannot start {}: {err}", binary.display()));
    let stdout = std::io::BufReader::new(child.stdout.take().expect("piped"));
    let reader = std::thread::spawn(move || {
        stdout
            .lines()
            .map(|line| (started.elapsed(), line.expect("utf-8 output")))
            .collect::<Vec<_>>()
    });
    let status = wait_or_kill(&mut child, name, started);
    let elapsed = started.elapsed();
    (reader.join().expect("reader thread"), status, elapsed)
}

/// The seed program's contract, for `tasks` and `threads`: every task runs about four rounds,
/// the signal is sent once, every task prints its stop line after it and never runs again, the
/// process exits successfully right after, and the stop lines follow the signal promptly.
fn check_seed_program(name: &str) {
    let (lines, status, elapsed) = run_example_timed(name);
    assert!(status.success(), "{name} exited with {status}");
    let text: Vec<&str> = lines.iter().map(|(_, line)| line.as_str()).collect();
    let signals: Vec<usize> =
        (0..text.len()).filter(|&i| text[i] == "Sending cancellation signal").collect();
    assert_eq!(signals.len(), 1, "one signal line in {text:#?}");
    let (signal_at, signal) = (lines[signals[0]].0, signals[0]);
    let mut worst = Duration::ZERO;
    for task in ["task1", "task2", "task3"] {
        let running = format!("{task} is running");
        let stopping = format!("{task} got the cancellation signal, stopping");
        let stops: Vec<usize> = (0..text.len()).filter(|&i| text[i] == stopping).collect();
        assert_eq!(stops.len(), 1, "{task} stops exactly once: {text:#?}");
        assert!(stops[0] > signal, "{task} stopped before the signal: {text:#?}");
        assert!(
            text[stops[0]..].iter().all(|line| *line != running),
            "{task} ran after its stop line: {text:#?}"
        );
        // Go's output has four rounds per task; a round whose sleep ends in the same timer tick
        // as main's may print a fifth before the signal.
        let rounds = text[..signal].iter().filter(|line| **line == running).count();
        assert!((4..=5).contains(&rounds), "{task} ran {rounds} rounds: {text:#?}");
        worst = worst.max(lines[stops[0]].0 - signal_at);
    }
    let known = |line: &str| {
        line == "Sending cancellation signal"
            || ["task1", "task2", "task3"].iter().any(|task| {
                line == format!("{task} is running")
                    || line == format!("{task} got the cancellation signal, stopping")
            })
    };
    assert!(text.iter().all(|line| known(line)), "no other lines: {text:#?}");
    // Generous bounds only (shared machines): the point is "stops promptly, exits at once",
    // not a latency figure; README.md reports the measured one.
    assert!(worst < Duration::from_secs(1), "a task took {worst:?} to stop");
    assert!(elapsed < Duration::from_secs(10), "{name} took {elapsed:?}");
    eprintln!("{name}: slowest stop line {worst:?} after the signal; exited after {elapsed:?}");
}

#[test]
fn tasks_stops_every_task_at_the_signal_and_exits() {
    check_seed_program("tasks");
}

#[test]
fn threads_stops_every_task_at_the_signal_and_exits() {
    check_seed_program("threads");
}

/// `examples/signals.rs` as a child process that gets real signals from `kill(2)`.
#[cfg(all(unix, feature = "signal", feature = "macros", feature = "tokio"))]
mod signals {
    use std::io::{BufRead, BufReader};
    use std::os::unix::process::ExitStatusExt;
    use std::process::{Child, Command, ExitStatus, Stdio};
    use std::sync::mpsc;
    use std::time::Instant;

    use super::{NO_HANG, build_example, wait_or_kill};

    /// A running example, and every stdout line it has printed so far.
    pub(super) struct Running {
        name: &'static str,
        child: Child,
        started: Instant,
        lines: mpsc::Receiver<String>,
        seen: Vec<String>,
    }

    impl Running {
        pub(super) fn start(name: &'static str, args: &[&str]) -> Running {
            let binary = build_example(name);
            let started = Instant::now();
            let mut child = Command::new(&binary)
                .args(args)
                .stdin(Stdio::null())
                .stdout(Stdio::piped())
                .stderr(Stdio::inherit())
                .spawn()
                .unwrap_or_else(|err| panic!("cannot start {}: {err}", binary.display()));
            let stdout = BufReader::new(child.stdout.take().expect("piped"));
            let (sender, lines) = mpsc::channel();
            std::thread::spawn(move || {
                for line in stdout.lines().map_while(Result::ok) {
                    if sender.send(line).is_err() {
                        break;
                    }
                }
            });
            Running { name, child, started, lines, seen: Vec::new() }
        }

        /// Reads lines until `done(seen)` holds; kills the example and fails after [`NO_HANG`].
        pub(super) fn read_until(&mut self, what: &str, done: impl Fn(&[String]) -> bool) {
            while !done(&self.seen) {
                let left = NO_HANG.saturating_sub(self.started.elapsed());
                match self.lines.recv_timeout(left) {
                    Ok(line) => self.seen.push(line),
                    Err(err) => {
                        let _ = self.child.kill();
                        let _ = self.child.wait();
                        let name = self.name;
                        panic!("{name}: no {what} ({err}); killed. Output: {:#?}", self.seen);
                    }
                }
            }
        }

        /// Waits until every task has printed `is running` at least once: the signal
        /// registration is in place before the tasks start.
        fn wait_until_running(&mut self) {
            self.read_until("running tasks", |seen| {
                ["task1", "task2", "task3"]
                    .iter()
                    .all(|task| seen.iter().any(|line| *line == format!("{task} is running")))
            });
        }

        /// Every line read so far.
        pub(super) fn seen(&self) -> &[String] {
            &self.seen
        }

        /// Sends `SIG<name>` to the example with `kill(2)`.
        pub(super) fn send(&self, name: &str) {
            use rustix::process::{Pid, Signal, kill_process};
            let signal = match name {
                "INT" => Signal::INT,
                "TERM" => Signal::TERM,
                other => panic!("no such signal here: {other}"),
            };
            let pid = i32::try_from(self.child.id()).ok().and_then(Pid::from_raw);
            kill_process(pid.expect("a valid pid"), signal)
                .unwrap_or_else(|err| panic!("kill -{name}: {err}"));
        }

        /// Waits for the example to exit and returns its status and every line it printed.
        pub(super) fn finish(mut self) -> (ExitStatus, Vec<String>) {
            let status = wait_or_kill(&mut self.child, self.name, self.started);
            // The pipe is closed once the process is gone: the reader ends, the channel drains.
            self.seen.extend(self.lines.iter());
            (status, self.seen)
        }
    }

    pub(super) fn position(lines: &[String], line: &str) -> usize {
        let found: Vec<usize> = (0..lines.len()).filter(|&i| lines[i] == line).collect();
        assert_eq!(found.len(), 1, "{line:?} exactly once in {lines:#?}");
        found[0]
    }

    /// One signal: the cause is printed, every task stops, cleans up, and the drain is clean.
    fn stops_cleanly_on(signal: &str) {
        let mut example = Running::start("signals", &[]);
        example.wait_until_running();
        example.send(signal);
        let (status, lines) = example.finish();
        assert!(status.success(), "exited with {status}: {lines:#?}");
        let shutting_down = position(&lines, &format!("shutting down: received SIG{signal}"));
        for task in ["task1", "task2", "task3"] {
            let stop = position(&lines, &format!("{task} got the cancellation signal, stopping"));
            let cleaned = position(&lines, &format!("{task} cleaned up"));
            assert!(stop < cleaned, "{lines:#?}");
            let running = format!("{task} is running");
            assert!(lines[stop..].iter().all(|line| *line != running), "{lines:#?}");
        }
        assert!(shutting_down < lines.len() - 1);
        let report = lines.last().unwrap();
        assert!(report.starts_with("all 3 tasks stopped in "), "{lines:#?}");
    }

    #[test]
    fn sigint_stops_every_task_and_exits_cleanly() {
        stops_cleanly_on("INT");
    }

    #[test]
    fn sigterm_stops_every_task_and_exits_cleanly() {
        stops_cleanly_on("TERM");
    }

    /// The cleanups take 60 s: the second SIGINT, sent while they run, kills the process.
    #[test]
    fn a_second_sigint_during_a_slow_cleanup_kills_it() {
        let mut example = Running::start("signals", &["--slow-cleanup"]);
        example.wait_until_running();
        example.send("INT");
        example.read_until("stop lines", |seen| {
            seen.iter()
                .filter(|line| line.ends_with("got the cancellation signal, stopping"))
                .count()
                == 3
        });
        let second = Instant::now();
        example.send("INT");
        let (status, lines) = example.finish();
        assert_eq!(status.signal(), Some(2), "terminated by SIGINT: {status}, {lines:#?}");
        assert!(lines.iter().all(|line| !line.ends_with("cleaned up")), "{lines:#?}");
        eprintln!("signals: the second SIGINT killed the example after {:?}", second.elapsed());
    }

    /// Without a second signal, the 3 s drain deadline aborts the 60 s cleanups.
    #[test]
    fn the_drain_deadline_aborts_slow_cleanups() {
        let mut example = Running::start("signals", &["--slow-cleanup"]);
        example.wait_until_running();
        example.send("TERM");
        let (status, lines) = example.finish();
        assert_eq!(status.code(), Some(1), "{status}: {lines:#?}");
        position(&lines, "shutting down: received SIGTERM");
        assert_eq!(lines.last().unwrap(), "3 of 3 tasks aborted after 3s", "{lines:#?}");
    }
}

/// `examples/server.rs` as a child process: real HTTP requests over loopback (a deadline, a
/// completed one, a client that goes away), then SIGINT during a request, then a clean exit
/// within the drain deadline.
#[cfg(all(unix, feature = "http", feature = "signal", feature = "macros", feature = "tokio"))]
mod server {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::{Duration, Instant};

    use super::NO_HANG;
    use super::signals::{Running, position};

    /// How long the example drains in-flight requests (`GRACE` in examples/server.rs).
    const GRACE: Duration = Duration::from_secs(5);

    /// Sends `GET path` with `headers` and returns the connection, for reading the answer.
    fn send_get(addr: &str, path: &str, headers: &str) -> TcpStream {
        let mut stream = TcpStream::connect(addr).expect("connect to the example");
        stream.set_read_timeout(Some(NO_HANG)).unwrap();
        let request =
            format!("GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n{headers}\r\n");
        stream.write_all(request.as_bytes()).expect("send the request");
        stream
    }

    /// The whole answer: status line, headers and body.
    fn answer(mut stream: TcpStream) -> String {
        let mut text = String::new();
        stream.read_to_string(&mut text).expect("read the answer");
        text
    }

    fn assert_answer(text: &str, status: &str, body: &str) {
        assert!(text.starts_with(&format!("HTTP/1.1 {status}\r\n")), "{text}");
        assert!(text.ends_with(&format!("\r\n\r\n{body}\n")), "{text}");
    }

    #[test]
    fn requests_then_sigint_cancels_the_one_in_flight_and_drains() {
        let mut example = Running::start("server", &["127.0.0.1:0"]);
        example.read_until("listening line", |seen| !seen.is_empty());
        let addr = example_addr(&example.seen()[0]);

        let timed_out = answer(send_get(&addr, "/work/5000", "grpc-timeout: 100m\r\n"));
        assert_answer(&timed_out, "504 Gateway Timeout", "cancelled: context deadline exceeded");
        assert_answer(&answer(send_get(&addr, "/work/20", "")), "200 OK", "done in 20 ms");

        let gone = send_get(&addr, "/work/60000", "");
        example.read_until("request 3", |seen| {
            seen.iter().any(|l| l == "request 3: working for 60000 ms")
        });
        drop(gone);
        example.read_until("the disconnect", |seen| {
            seen.iter().any(|l| l == "request 3: client went away")
        });

        let in_flight = send_get(&addr, "/work/60000", "");
        example.read_until("request 4", |seen| {
            seen.iter().any(|l| l == "request 4: working for 60000 ms")
        });
        let signalled = Instant::now();
        example.send("INT");
        assert_answer(&answer(in_flight), "503 Service Unavailable", "cancelled: received SIGINT");
        let (status, lines) = example.finish();
        let exited = signalled.elapsed();
        eprintln!("server: exited {exited:?} after SIGINT");
        assert!(status.success(), "exited with {status}: {lines:#?}");
        assert!(exited < GRACE, "exited {exited:?} after SIGINT, past the drain deadline");

        position(&lines, "request 1: cancelled: context deadline exceeded");
        position(&lines, "request 2: done");
        let cancelled = position(&lines, "request 4: cancelled: received SIGINT");
        let shutting_down = position(&lines, "shutting down: received SIGINT");
        let report = lines.len() - 1;
        assert!(cancelled < report && shutting_down < report, "{lines:#?}");
        let report = &lines[report];
        assert!(report.starts_with("drained: the 1 task stopped in "), "{lines:#?}");
    }

    /// `listening on 127.0.0.1:PORT` → `127.0.0.1:PORT`.
    fn example_addr(line: &str) -> String {
        line.strip_prefix("listening on ").unwrap_or_else(|| panic!("{line:?}")).to_owned()
    }
}
