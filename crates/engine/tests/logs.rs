//! `docker logs` over a json-file log: streams, multiplexed frames and tty bytes, tail,
//! since/until, timestamps, malformed lines, and follow ending when the container stops or is
//! removed.

mod records;

use std::fs::OpenOptions;
use std::io::Write;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use berth_engine::container::{Handle, Status};
use berth_engine::logs::{LogOptions, LogStream};
use berth_engine::Engine;
use records::engine;

fn container(engine: &Engine, n: u8, tty: bool) -> Arc<Handle> {
    records::container(engine, n, "logs", serde_json::json!({ "Tty": tty }))
}

fn at(secs: u64) -> SystemTime {
    UNIX_EPOCH + Duration::from_secs(secs)
}

fn stamp(secs: u64) -> String {
    humantime::format_rfc3339_nanos(at(secs)).to_string()
}

fn append(handle: &Handle, lines: &[(&str, &str, u64)]) {
    let mut file = OpenOptions::new()
        .create(true)
        .append(true)
        .open(handle.paths.log())
        .unwrap();
    for (stream, text, secs) in lines {
        let line = serde_json::json!({"log": text, "stream": stream, "time": stamp(*secs)});
        writeln!(file, "{line}").unwrap();
    }
}

fn all_streams() -> LogOptions {
    LogOptions {
        stdout: true,
        stderr: true,
        ..LogOptions::default()
    }
}

fn read_all(engine: &Engine, id: &str, opts: LogOptions) -> Vec<u8> {
    let mut out = Vec::new();
    engine
        .container_logs(id, opts)
        .unwrap()
        .copy_to(&mut out)
        .unwrap();
    out
}

/// Multiplexed frames as (stream, payload).
fn frames(mut data: &[u8]) -> Vec<(u8, String)> {
    let mut out = Vec::new();
    while !data.is_empty() {
        assert!(data.len() >= 8, "truncated frame header");
        assert_eq!(&data[1..4], &[0, 0, 0]);
        let len = u32::from_be_bytes(data[4..8].try_into().unwrap()) as usize;
        out.push((
            data[0],
            String::from_utf8(data[8..8 + len].to_vec()).unwrap(),
        ));
        data = &data[8 + len..];
    }
    out
}

fn texts(data: &[u8]) -> Vec<String> {
    frames(data).into_iter().map(|(_, t)| t).collect()
}

#[tokio::test]
async fn streams_frames_and_malformed_lines() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&dir, "logs-streams");
    let h = container(&e, 1, false);
    append(&h, &[("stdout", "out1\n", 100), ("stderr", "err1\n", 101)]);
    {
        let mut file = OpenOptions::new().append(true).open(h.paths.log()).unwrap();
        file.write_all(b"{not json\n{\"log\":\"x\",\"stream\":\"nowhere\",\"time\":\"0\"}\n")
            .unwrap();
    }
    append(&h, &[("stdout", "out2\n", 102)]);

    let out = read_all(&e, &h.id, all_streams());
    assert_eq!(
        frames(&out),
        [
            (1, "out1\n".into()),
            (2, "err1\n".into()),
            (1, "out2\n".into())
        ]
    );
    let only_err = LogOptions {
        stdout: false,
        ..all_streams()
    };
    assert_eq!(texts(&read_all(&e, "logs1", only_err)), ["err1\n"]);
    let only_out = LogOptions {
        stderr: false,
        ..all_streams()
    };
    assert_eq!(
        texts(&read_all(&e, "logs1", only_out)),
        ["out1\n", "out2\n"]
    );
    assert!(e.container_logs("nosuch", all_streams()).is_err());
}

#[tokio::test]
async fn tty_containers_get_raw_bytes_and_timestamps_prefix_lines() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&dir, "logs-tty");
    let h = container(&e, 2, true);
    append(&h, &[("stdout", "a\r\n", 100), ("stdout", "b\r\n", 101)]);
    let stream = e.container_logs(&h.id, all_streams()).unwrap();
    assert!(stream.tty);
    let mut out = Vec::new();
    stream.copy_to(&mut out).unwrap();
    assert_eq!(out, b"a\r\nb\r\n");

    let opts = LogOptions {
        timestamps: true,
        ..all_streams()
    };
    let out = String::from_utf8(read_all(&e, &h.id, opts)).unwrap();
    assert_eq!(out, format!("{} a\r\n{} b\r\n", stamp(100), stamp(101)));
    assert!(out.starts_with("1970-01-01T00:01:40.000000000Z a"), "{out}");
}

#[tokio::test]
async fn tail_since_and_until() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&dir, "logs-tail");
    let h = container(&e, 3, false);
    // Enough lines for the tail to span several 64 KiB blocks.
    let many: Vec<String> = (0..5000).map(|i| format!("line {i}\n")).collect();
    let lines: Vec<(&str, &str, u64)> = many
        .iter()
        .enumerate()
        .map(|(i, l)| ("stdout", l.as_str(), 1000 + i as u64))
        .collect();
    append(&h, &lines);

    let tail = |n| LogOptions {
        tail: Some(n),
        ..all_streams()
    };
    assert_eq!(
        texts(&read_all(&e, &h.id, tail(2))),
        ["line 4998\n", "line 4999\n"]
    );
    assert!(read_all(&e, &h.id, tail(0)).is_empty());
    assert_eq!(texts(&read_all(&e, &h.id, tail(3000))).len(), 3000);
    assert_eq!(texts(&read_all(&e, &h.id, tail(3000)))[0], "line 2000\n");
    assert_eq!(texts(&read_all(&e, &h.id, tail(9999))).len(), 5000);

    let window = LogOptions {
        since: Some(at(1010)),
        until: Some(at(1012)),
        ..all_streams()
    };
    assert_eq!(
        texts(&read_all(&e, &h.id, window)),
        ["line 10\n", "line 11\n", "line 12\n"]
    );
    // tail first, then since: the last 5 lines, of which those since 4997.
    let both = LogOptions {
        since: Some(at(1000 + 4997)),
        ..tail(5)
    };
    assert_eq!(texts(&read_all(&e, &h.id, both)).len(), 3);
}

/// Run a follow in a thread, sending each chunk's texts (and `None` at the end).
fn follow(stream: LogStream) -> mpsc::Receiver<Option<Vec<String>>> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut stream = stream;
        while let Some(chunk) = stream.next_chunk().unwrap() {
            tx.send(Some(texts(&chunk))).unwrap();
        }
        let _ = tx.send(None);
    });
    rx
}

/// The follower's next chunk, waited for without blocking the runtime's thread (the
/// engine wakes followers on state changes from a task on this runtime).
async fn next(rx: &mpsc::Receiver<Option<Vec<String>>>) -> Option<Vec<String>> {
    next_within(rx, Duration::from_secs(5))
        .await
        .expect("follow did not wake up")
}

async fn next_within(
    rx: &mpsc::Receiver<Option<Vec<String>>>,
    limit: Duration,
) -> Option<Option<Vec<String>>> {
    let start = std::time::Instant::now();
    while start.elapsed() < limit {
        if let Ok(item) = rx.try_recv() {
            return Some(item);
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    None
}

fn set_status(h: &Handle, status: Status) {
    h.update(|c| c.state.status = status).unwrap();
}

#[tokio::test]
async fn follow_streams_new_lines_and_ends_when_the_container_stops() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&dir, "logs-follow");
    let h = container(&e, 4, false);
    append(&h, &[("stdout", "before\n", 100)]);
    set_status(&h, Status::Running);
    let opts = LogOptions {
        follow: true,
        tail: Some(1),
        ..all_streams()
    };
    let rx = follow(e.container_logs(&h.id, opts).unwrap());
    assert_eq!(next(&rx).await.unwrap(), ["before\n"]);
    // Nothing new: the follower waits rather than ending.
    assert!(next_within(&rx, Duration::from_millis(300)).await.is_none());
    append(&h, &[("stderr", "during\n", 101)]);
    assert_eq!(next(&rx).await.unwrap(), ["during\n"]);
    // The last lines are written, then the exit is recorded: both lines come, then the end.
    append(&h, &[("stdout", "last\n", 102)]);
    set_status(&h, Status::Exited);
    let stopped = std::time::Instant::now();
    let mut rest = Vec::new();
    while let Some(chunk) = next(&rx).await {
        rest.extend(chunk);
    }
    assert_eq!(rest, ["last\n"]);
    // Woken by the state change itself, not by a periodic recheck.
    assert!(
        stopped.elapsed() < Duration::from_millis(500),
        "{:?}",
        stopped.elapsed()
    );

    // Following a stopped container is a plain read.
    let opts = LogOptions {
        follow: true,
        ..all_streams()
    };
    assert_eq!(read_all(&e, &h.id, opts).len(), 3 * 8 + 7 + 7 + 5);
}

#[tokio::test]
async fn follow_ends_when_the_container_is_removed() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&dir, "logs-remove");
    let h = container(&e, 5, false);
    append(&h, &[("stdout", "hi\n", 100)]);
    set_status(&h, Status::Running);
    let opts = LogOptions {
        follow: true,
        ..all_streams()
    };
    let rx = follow(e.container_logs(&h.id, opts).unwrap());
    assert_eq!(next(&rx).await.unwrap(), ["hi\n"]);
    let id = h.id.clone();
    drop(h);
    e.containers.remove(&id).unwrap();
    assert_eq!(next(&rx).await, None);
}

/// A client connection that can go away: writes and flushes fail once `gone` is set.
struct Client {
    gone: Arc<std::sync::atomic::AtomicBool>,
}

impl Write for Client {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.flush().map(|()| buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        if self.gone.load(std::sync::atomic::Ordering::SeqCst) {
            Err(std::io::ErrorKind::BrokenPipe.into())
        } else {
            Ok(())
        }
    }
}

#[tokio::test]
async fn follow_of_a_quiet_container_ends_when_the_client_goes_away() {
    let dir = tempfile::tempdir().unwrap();
    let e = engine(&dir, "logs-client");
    let h = container(&e, 6, false);
    append(&h, &[("stdout", "hi\n", 100)]);
    set_status(&h, Status::Running);
    let stream = e
        .container_logs(
            &h.id,
            LogOptions {
                follow: true,
                ..all_streams()
            },
        )
        .unwrap();
    let gone = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let mut client = Client { gone: gone.clone() };
    let follower = std::thread::spawn(move || stream.copy_to(&mut client));
    tokio::time::sleep(Duration::from_millis(200)).await;
    assert!(
        !follower.is_finished(),
        "a running container's follow ended by itself"
    );
    gone.store(true, std::sync::atomic::Ordering::SeqCst);
    for _ in 0..300 {
        if follower.is_finished() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(follower.is_finished(), "the follow outlived its client");
    assert!(follower.join().unwrap().is_err());
}
