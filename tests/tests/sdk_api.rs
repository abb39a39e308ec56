//! What the SDKs stand on, through the real msbd over its socket: the JSON session
//! (`Upgrade: msb-session-json`), the buffered exec (`POST .../exec`) and drain
//! (`POST .../drain`, `msb drain`).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use base64::Engine as _;
use msb_e2e::{require_root, TestHome};
use serde_json::{json, Value};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// One request on its own connection: `(status, body as JSON or Null)`.
fn call(home: &std::path::Path, method: &str, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut stream = UnixStream::connect(home.join("msbd.sock")).expect("msbd socket");
    let body = body.map(|b| b.to_string()).unwrap_or_default();
    let content_type = if body.is_empty() {
        ""
    } else {
        "Content-Type: application/json\r\n"
    };
    write!(
        stream,
        "{method} {path} HTTP/1.1\r\nHost: msbd\r\nConnection: close\r\n{content_type}Content-Length: {}\r\n\r\n{body}",
        body.len()
    )
    .unwrap();
    let mut answer = String::new();
    stream.read_to_string(&mut answer).unwrap();
    let status: u16 = answer[9..12].parse().unwrap();
    let body = answer.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Every sandbox's supervisor log (for a failure's message).
fn supervisor_logs(home: &TestHome) -> String {
    let mut all = String::new();
    for entry in std::fs::read_dir(home.path().join("sandboxes"))
        .into_iter()
        .flatten()
        .flatten()
    {
        let log = std::fs::read_to_string(entry.path().join("supervisor.log")).unwrap_or_default();
        all.push_str(&format!("--- {}\n{log}", entry.path().display()));
    }
    all
}

/// A JSON session on sandbox `name`: the connection after the 101.
struct Session {
    reader: BufReader<UnixStream>,
    writer: UnixStream,
}

impl Session {
    fn open(home: &TestHome, name: &str) -> Session {
        let mut stream = UnixStream::connect(home.path().join("msbd.sock")).unwrap();
        write!(
            stream,
            "GET /v1/sandboxes/{name}/session HTTP/1.1\r\nHost: msbd\r\nConnection: upgrade\r\nUpgrade: msb-session-json\r\n\r\n"
        )
        .unwrap();
        stream
            .set_read_timeout(Some(Duration::from_secs(60)))
            .unwrap();
        let mut reader = BufReader::new(stream.try_clone().unwrap());
        let mut status = String::new();
        reader.read_line(&mut status).unwrap();
        if !status.contains(" 101 ") {
            let mut rest = String::new();
            let _ = reader.read_to_string(&mut rest);
            panic!(
                "{status}{rest}\ninspect: {}\nsupervisor logs: {}",
                home.msb(&["inspect", name]).stdout,
                supervisor_logs(home)
            );
        }
        loop {
            let mut line = String::new();
            reader.read_line(&mut line).unwrap();
            if line == "\r\n" {
                break;
            }
        }
        Session {
            reader,
            writer: stream,
        }
    }

    fn send(&mut self, message: Value) {
        writeln!(self.writer, "{message}").unwrap();
    }

    /// The next event; `Null` at the end of the stream.
    fn next(&mut self) -> Value {
        let mut line = String::new();
        self.reader.read_line(&mut line).unwrap();
        serde_json::from_str(&line).unwrap_or(Value::Null)
    }

    /// Every event up to the last (`exited`, `exec_failed` or `error`): stdout, stderr, the last.
    fn finish(&mut self) -> (String, String, Value) {
        let (mut stdout, mut stderr) = (Vec::new(), Vec::new());
        loop {
            let event = self.next();
            if let Some(output) = event.get("output") {
                let data = B64.decode(output["data"].as_str().unwrap()).unwrap();
                match output["stream"].as_str().unwrap() {
                    "stdout" => stdout.extend(data),
                    _ => stderr.extend(data),
                }
                continue;
            }
            if event.get("started").is_some() {
                continue;
            }
            return (
                String::from_utf8_lossy(&stdout).into_owned(),
                String::from_utf8_lossy(&stderr).into_owned(),
                event,
            );
        }
    }
}

fn exec(home: &TestHome, name: &str, body: Value) -> (u16, Value) {
    call(
        home.path(),
        "POST",
        &format!("/v1/sandboxes/{name}/exec"),
        Some(body),
    )
}

fn decoded(value: &Value) -> String {
    String::from_utf8(B64.decode(value.as_str().unwrap()).unwrap()).unwrap()
}

#[test]
fn json_session_streams_stdin_and_output_and_reports_the_exit() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    home.detached("box", "while :; do sleep 1; done");

    let mut cat = Session::open(&home, "box");
    cat.send(json!({"exec": {"argv": ["cat"], "stdin": true}}));
    let started = cat.next();
    assert!(started["started"]["pid"].as_u64().unwrap() > 1, "{started}");
    cat.send(json!({"stdin": B64.encode("hello\n")}));
    let echoed = cat.next();
    assert_eq!(echoed["output"]["stream"], "stdout", "{echoed}");
    assert_eq!(decoded(&echoed["output"]["data"]), "hello\n");
    cat.send(json!({"stdin_eof": true}));
    let (_, _, last) = cat.finish();
    assert_eq!(last, json!({"exited": {"code": 0, "signal": null}}));

    let mut both = Session::open(&home, "box");
    both.send(
        json!({"exec": {"argv": ["sh", "-c", "echo out; echo err >&2; echo $GREETING; exit 3"],
                              "env": [["GREETING", "hi"]], "workdir": "/tmp"}}),
    );
    let (stdout, stderr, last) = both.finish();
    assert_eq!((stdout.as_str(), stderr.as_str()), ("out\nhi\n", "err\n"));
    assert_eq!(last["exited"]["code"], 3);

    let mut signalled = Session::open(&home, "box");
    signalled.send(json!({"exec": {"argv": ["sleep", "30"], "stdin": true}}));
    assert!(signalled.next().get("started").is_some());
    signalled.send(json!({"signal": 15}));
    let (_, _, last) = signalled.finish();
    assert_eq!(last["exited"], json!({"code": null, "signal": 15}));

    let mut missing = Session::open(&home, "box");
    missing.send(json!({"exec": {"argv": ["no-such-command"]}}));
    let failed = missing.next();
    assert_eq!(failed["exec_failed"]["kind"], "not_found", "{failed}");

    let mut bad = Session::open(&home, "box");
    bad.send(json!({"stdin": "aGk="}));
    assert!(bad.next()["error"].as_str().unwrap().contains("opens with"));

    // Unknown sandbox, missing Upgrade.
    let (status, body) = call(home.path(), "GET", "/v1/sandboxes/nope/session", None);
    assert_eq!((status, body["kind"].as_str()), (400, Some("invalid")));
}

#[test]
fn buffered_exec_answers_outputs_exit_codes_and_timeouts() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    home.detached("box", "while :; do sleep 1; done");

    let (status, body) = exec(
        &home,
        "box",
        json!({"argv": ["sh", "-c", "cat; echo oops >&2; exit 7"], "stdin": B64.encode("fed in")}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(decoded(&body["stdout"]), "fed in");
    assert_eq!(decoded(&body["stderr"]), "oops\n");
    assert_eq!(body["exit_code"], 7);
    assert_eq!(body["signal"], Value::Null);
    assert_eq!(
        (&body["stdout_truncated"], &body["timed_out"]),
        (&json!(false), &json!(false))
    );

    let started = Instant::now();
    let (status, body) = exec(
        &home,
        "box",
        json!({"argv": ["sleep", "30"], "timeout_ms": 300}),
    );
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["timed_out"], true);
    assert_eq!(
        (body["exit_code"].as_i64(), body["signal"].as_i64()),
        (Some(137), Some(9))
    );
    assert!(started.elapsed() < Duration::from_secs(10));

    let (status, body) = exec(&home, "box", json!({"argv": ["no-such-command"]}));
    assert_eq!(
        (status, body["kind"].as_str()),
        (422, Some("start_failed")),
        "{body}"
    );
    assert_eq!(body["exit_code"], 127);
    let (status, body) = exec(&home, "box", json!({"argv": []}));
    assert_eq!(
        (status, body["kind"].as_str()),
        (400, Some("invalid")),
        "{body}"
    );
    let (status, _) = exec(
        &home,
        "box",
        json!({"argv": ["true"], "stdin": "not base64"}),
    );
    assert_eq!(status, 400);
    let (status, _) = exec(&home, "nope", json!({"argv": ["true"]}));
    assert_eq!(status, 404);
    home.ok(&["stop", "box", "-t", "0"]);
    let (status, body) = exec(&home, "box", json!({"argv": ["true"]}));
    assert_eq!(
        (status, body["kind"].as_str()),
        (409, Some("conflict")),
        "{body}"
    );
}

#[test]
fn drain_refuses_new_sessions_lets_running_ones_finish_then_stops() {
    if !require_root() {
        return;
    }
    let home = TestHome::new();
    home.detached("box", "while :; do sleep 1; done");
    let mut running = Session::open(&home, "box");
    running.send(json!({"exec": {"argv": ["sh", "-c", "sleep 3; echo finished"]}}));
    assert!(running.next().get("started").is_some());

    let drained_at = Instant::now();
    let drain = std::thread::spawn({
        let home = home.path().to_owned();
        move || call(&home, "POST", "/v1/sandboxes/box/drain", Some(json!({})))
    });
    home.eventually(Duration::from_secs(10), "the sandbox draining", || {
        home.status("box") == "Draining"
    });
    let (status, body) = exec(&home, "box", json!({"argv": ["true"]}));
    assert_eq!(status, 409, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("draining"),
        "{body}"
    );

    let (stdout, _, last) = running.finish();
    assert_eq!(
        (stdout.as_str(), &last["exited"]["code"]),
        ("finished\n", &json!(0))
    );
    let (status, info) = drain.join().unwrap();
    assert_eq!(status, 200, "{info}");
    assert!(drained_at.elapsed() >= Duration::from_secs(2));
    assert_eq!(info["status"], "Stopped");
    let run = info["runs"].as_array().unwrap().last().unwrap().clone();
    assert_eq!(run["termination_reason"], "DrainRequested", "{run}");
    assert_eq!(run["end_cause"], "stop");

    // With a timeout, a session that outlives it is ended by the stop.
    home.ok(&["start", "box"]);
    let mut endless = Session::open(&home, "box");
    endless.send(json!({"exec": {"argv": ["sleep", "300"]}}));
    assert!(endless.next().get("started").is_some());
    let started = Instant::now();
    home.ok(&["drain", "box", "--timeout", "1", "-t", "1"]);
    assert!(started.elapsed() < Duration::from_secs(20));
    assert_eq!(home.status("box"), "Stopped");
    let (_, _, last) = endless.finish();
    assert!(
        last.get("exited").is_some() || last.get("error").is_some(),
        "{last}"
    );
    let (status, _) = call(
        home.path(),
        "POST",
        "/v1/sandboxes/box/drain",
        Some(json!({})),
    );
    assert_eq!(status, 409, "a stopped sandbox has nothing to drain");
}
