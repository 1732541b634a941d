//! The transport's limits against the running binary: uploads over
//! `max_upload_bytes`, idle and slow connections, the connection cap and
//! overload shedding. Timeouts are set small through the environment; no
//! assertion depends on the machine's speed beyond generous upper bounds.

use std::collections::VecDeque;
use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::body::Bytes;

use super::*;

/// A request body sent in chunks with no length announced: reqwest then uses
/// chunked transfer encoding, so the server learns the size only as it reads.
pub(crate) struct UnsizedBody(pub(crate) VecDeque<Bytes>);

impl http_body::Body for UnsizedBody {
    type Data = Bytes;
    type Error = std::io::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<http_body::Frame<Bytes>, std::io::Error>>> {
        Poll::Ready(self.0.pop_front().map(|chunk| Ok(http_body::Frame::data(chunk))))
    }
}

const BOUNDARY: &str = "fraudlens-test-boundary";

/// `csv` as the multipart body of an upload (field `file`).
fn multipart_body(csv: &str) -> Vec<u8> {
    format!(
        "--{BOUNDARY}\r\ncontent-disposition: form-data; name=\"file\"; filename=\"tx.csv\"\r\n\
         content-type: text/csv\r\n\r\n{csv}\r\n--{BOUNDARY}--\r\n"
    )
    .into_bytes()
}

/// `host:port` of a server.
fn address(server: &Server) -> String {
    server.base.trim_start_matches("http://").to_owned()
}

/// Reads what the server sends until it closes the connection (or `wait` passes: a panic).
fn read_until_closed(stream: &mut TcpStream, wait: Duration) -> String {
    stream.set_read_timeout(Some(wait)).unwrap();
    let mut received = Vec::new();
    let mut buffer = [0u8; 4096];
    loop {
        match stream.read(&mut buffer) {
            Ok(0) => break,
            Ok(n) => received.extend_from_slice(&buffer[..n]),
            Err(error) if error.kind() == std::io::ErrorKind::ConnectionReset => break,
            Err(error) => panic!(
                "the server did not close the connection within {wait:?}: {error}; got {:?}",
                String::from_utf8_lossy(&received)
            ),
        }
    }
    String::from_utf8_lossy(&received).into_owned()
}

/// Status and JSON body of a raw HTTP/1.1 response.
fn parse_response(response: &str) -> (u16, Value) {
    let status = response
        .split_whitespace()
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP response: {response:?}"));
    let body = response.split_once("\r\n\r\n").map_or("", |(_, body)| body);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// Raises this process's soft open-file limit to the hard one (the server,
/// started after, inherits it) and returns it.
fn raise_open_file_limit() -> u64 {
    use rustix::process::{Resource, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    let raised = rustix::process::Rlimit {
        current: limit.maximum,
        maximum: limit.maximum,
    };
    if setrlimit(Resource::Nofile, raised).is_ok() {
        limit.maximum.unwrap_or(u64::MAX)
    } else {
        limit.current.unwrap_or(u64::MAX)
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_upload_over_the_limit_stores_nothing_or_says_what_it_stored() {
    const LIMIT: usize = 200_000;
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Backend::Sqlite).await;
    let service = key(dir.path(), &db.url, "service");
    let analyst = key(dir.path(), &db.url, "analyst");
    let server = Server::start_with(
        dir.path(),
        &db.url,
        Some(&trained().model()),
        &[("FRAUDLENS_SERVE__MAX_UPLOAD_BYTES", &LIMIT.to_string())],
    );
    let store = fraudlens_store::connect(&db.url, &fraudlens_store::StoreOptions::default())
        .await
        .unwrap();
    let bytes_per_row = csv_of(1_000).len() / 1_000;
    let csv = csv_of(LIMIT * 3 / 2 / bytes_per_row);
    let body = multipart_body(&csv);
    assert!(body.len() > LIMIT * 5 / 4, "{} bytes", body.len());

    // Content-Length over the limit: 413 before the body is read (only its first 4 KiB is ever sent)
    let head = format!(
        "POST /api/v1/transactions/upload HTTP/1.1\r\nhost: {}\r\nx-api-key: {service}\r\n\
         content-type: multipart/form-data; boundary={BOUNDARY}\r\ncontent-length: {}\r\n\r\n",
        address(&server),
        body.len()
    );
    let (status, error) = tokio::task::spawn_blocking({
        let address = address(&server);
        let first_bytes = body[..4_096].to_vec();
        move || {
            let mut stream = TcpStream::connect(address).unwrap();
            stream.write_all(head.as_bytes()).unwrap();
            stream.write_all(&first_bytes).unwrap();
            parse_response(&read_until_closed(&mut stream, Duration::from_secs(60)))
        }
    })
    .await
    .unwrap();
    assert_eq!(status, 413, "{error}");
    assert_eq!(error["code"], "payload_too_large", "{error}");
    assert!(is_error_body(&error), "{error}");
    assert_eq!(
        store.count_transactions().await.unwrap(),
        0,
        "refused up front: nothing stored"
    );

    // no Content-Length (chunked): rows are stored as they arrive, and the 413
    // says exactly how many and up to which line
    let chunks: VecDeque<Bytes> = csv.as_bytes().chunks(16 << 10).map(Bytes::copy_from_slice).collect();
    let form = reqwest::multipart::Form::new().part(
        "file",
        reqwest::multipart::Part::stream(reqwest::Body::wrap(UnsizedBody(chunks))).file_name("tx.csv"),
    );
    let client = reqwest::Client::new();
    let response = client
        .post(server.url("/api/v1/transactions/upload"))
        .header("x-api-key", &service)
        .multipart(form)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let report: Value = response.json().await.unwrap();
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{report}");
    assert!(is_error_body(&report), "{report}");
    assert_eq!(report["code"], "payload_too_large", "{report}");
    let stored = report["stored"]
        .as_u64()
        .unwrap_or_else(|| panic!("no stored count: {report}"));
    let rejected = report["rejected"].as_u64().unwrap();
    let last_line = report["last_line"].as_u64().unwrap();
    assert!(stored > 0, "rows before the limit are stored: {report}");
    assert_eq!(
        store.count_transactions().await.unwrap(),
        stored,
        "the answer counts what the store holds: {report}"
    );
    // line 1 is the header: every row up to last_line is stored or refused, none after
    assert_eq!(stored + rejected, last_line - 1, "{report}");
    let lines: Vec<&str> = csv.lines().collect();
    let id_column = lines[0].split(',').position(|name| name == "transaction_id").unwrap();
    let id_on_line = |line: u64| lines[line as usize - 1].split(',').nth(id_column).unwrap().to_owned();
    let (status, _) = get(
        &client,
        &server.url(&format!("/api/v1/transactions/{}", id_on_line(last_line))),
        &analyst,
    )
    .await;
    assert_eq!(status, StatusCode::OK, "the last line reported is stored");
    let (status, _) = get(
        &client,
        &server.url(&format!("/api/v1/transactions/{}", id_on_line(last_line + 1))),
        &analyst,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "the line after it is not");
    eprintln!(
        "upload over the limit: {} bytes chunked, limit {LIMIT}: {report}",
        body.len()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_and_slow_connections_are_closed_and_the_api_keeps_answering() {
    // long enough for every connection to be open at once when the probe
    // runs (opening 3,305 takes seconds against a debug build)
    const HEADER_TIMEOUT: Duration = Duration::from_secs(15);
    let open_file_limit = raise_open_file_limit();
    let n_idle: usize = 3_000.min(open_file_limit.saturating_sub(600) as usize);
    let n_partial_head = 300;
    let n_slow_body = 5;
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Backend::Sqlite).await;
    let service = key(dir.path(), &db.url, "service");
    let server = Server::start_with(
        dir.path(),
        &db.url,
        Some(&trained().model()),
        &[
            ("FRAUDLENS_SERVE__HEADER_READ_TIMEOUT_SECONDS", "15"),
            ("FRAUDLENS_SERVE__BODY_READ_TIMEOUT_SECONDS", "3"),
            ("FRAUDLENS_SERVE__MIN_BODY_BYTES_PER_SECOND", "1024"),
        ],
    );
    let address = address(&server);
    let started = Instant::now();
    let (idle, partial_head, slow_body) = tokio::task::spawn_blocking({
        let address = address.clone();
        let service = service.clone();
        move || {
            let idle: Vec<TcpStream> = (0..n_idle).map(|_| TcpStream::connect(&address).unwrap()).collect();
            let partial_head: Vec<TcpStream> = (0..n_partial_head)
                .map(|_| {
                    let mut stream = TcpStream::connect(&address).unwrap();
                    stream
                        .write_all(b"POST /api/v1/transactions HTTP/1.1\r\nhost: fraudlens\r\nx-api-")
                        .unwrap();
                    stream
                })
                .collect();
            // full heads, then a body at 5 bytes/s: under the 1 KiB/s floor
            let slow_body: Vec<std::thread::JoinHandle<String>> = (0..n_slow_body)
                .map(|_| {
                    let mut stream = TcpStream::connect(&address).unwrap();
                    let head = format!(
                        "POST /api/v1/transactions HTTP/1.1\r\nhost: fraudlens\r\nx-api-key: {service}\r\n\
                         content-type: application/json\r\ncontent-length: 1000\r\n\r\n{{\"transaction_id\":"
                    );
                    stream.write_all(head.as_bytes()).unwrap();
                    let mut reader = stream.try_clone().unwrap();
                    std::thread::spawn(move || {
                        let writer = std::thread::spawn(move || {
                            for _ in 0..300 {
                                if stream.write_all(b" ").is_err() {
                                    return;
                                }
                                std::thread::sleep(Duration::from_millis(200));
                            }
                        });
                        let response = read_until_closed(&mut reader, Duration::from_secs(60));
                        let _ = writer.join();
                        response
                    })
                })
                .collect();
            (idle, partial_head, slow_body)
        }
    })
    .await
    .unwrap();
    let opened_in = started.elapsed();

    // the probe and a scoring request still answer while all of those are held
    let client = reqwest::Client::new();
    let metric = |text: &str, name: &str| -> u64 {
        text.lines()
            .find_map(|line| line.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
            .unwrap_or(0)
    };
    let metrics = server.metrics().await;
    let n_open =
        metric(&metrics, "http_connections_accepted_total") - metric(&metrics, "http_connections_closed_total");
    let probe_started = Instant::now();
    let ready = client.get(server.url("/health/ready")).send().await.unwrap();
    let probe_took = probe_started.elapsed();
    assert_eq!(ready.status(), StatusCode::OK);
    let scoring_started = Instant::now();
    let (status, decision) = post(
        &client,
        &server.url("/api/v1/transactions"),
        &service,
        &transactions(1)[0],
    )
    .await;
    let scoring_took = scoring_started.elapsed();
    assert_eq!(status, StatusCode::OK, "{decision}");
    assert!(
        probe_took < HEADER_TIMEOUT,
        "the probe waited for the idle connections to be dropped: {probe_took:?}"
    );

    // then the server closes every one of them: heads after the header
    // timeout, the slow bodies with a 408 after the body allowance
    let (n_closed, all_closed_after) = tokio::task::spawn_blocking(move || {
        let mut n_closed = 0;
        for mut stream in idle.into_iter().chain(partial_head) {
            let wait = (started + HEADER_TIMEOUT + Duration::from_secs(30)).saturating_duration_since(Instant::now());
            read_until_closed(&mut stream, wait.max(Duration::from_millis(1)));
            n_closed += 1;
        }
        for handle in slow_body {
            let (status, body) = parse_response(&handle.join().unwrap());
            assert_eq!(status, 408, "{body}");
            assert_eq!(body["code"], "request_timeout", "{body}");
            n_closed += 1;
        }
        (n_closed, started.elapsed())
    })
    .await
    .unwrap();
    assert_eq!(n_closed, n_idle + n_partial_head + n_slow_body);
    let metrics = server.metrics().await;
    let timed_out: Vec<&str> = metrics
        .lines()
        .filter(|line| line.starts_with("http_connections_timed_out_total"))
        .collect();
    assert!(
        timed_out.iter().any(|line| line.contains("phase=\"body\"")),
        "{timed_out:?}"
    );
    eprintln!(
        "connections: {n_idle} idle + {n_partial_head} partial heads + {n_slow_body} slow bodies opened in {opened_in:?} \
         (open-file limit {open_file_limit}), {n_open} open at the server; /health/ready answered in {probe_took:?}, a scoring request in \
         {scoring_took:?}; all {n_closed} closed by the server {all_closed_after:?} after the first was opened; {timed_out:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_hyper_cannot_parse_get_code_and_message_json() {
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Backend::Sqlite).await;
    let server = Server::start_with(dir.path(), &db.url, Some(&trained().model()), &[]);
    let address = address(&server);
    let long_target = format!("GET /{} HTTP/1.1\r\nhost: x\r\n\r\n", "a".repeat(70 * 1024));
    let many_headers = format!(
        "GET /health/live HTTP/1.1\r\nhost: x\r\n{}\r\n",
        (0..200).map(|i| format!("x-h{i}: v\r\n")).collect::<String>()
    );
    let cases = [
        ("GET / HTTP/1.1\r\nno colon here\r\n\r\n".to_owned(), 400, "bad_request"),
        ("GE\x01T / HTTP/1.1\r\nhost: x\r\n\r\n".to_owned(), 400, "bad_request"),
        (long_target, 414, "uri_too_long"),
        (many_headers, 431, "headers_too_large"),
    ];
    let answers = tokio::task::spawn_blocking(move || {
        cases
            .into_iter()
            .map(|(request, status, code)| {
                let mut stream = TcpStream::connect(&address).unwrap();
                stream.write_all(request.as_bytes()).unwrap();
                (read_until_closed(&mut stream, Duration::from_secs(30)), status, code)
            })
            .collect::<Vec<_>>()
    })
    .await
    .unwrap();
    for (answer, status, code) in answers {
        let (got, body) = parse_response(&answer);
        assert_eq!(got, status, "{answer}");
        assert!(is_error_body(&body), "{answer}");
        assert_eq!(body["code"], code, "{answer}");
        assert!(
            answer.to_ascii_lowercase().contains("content-type: application/json"),
            "{answer}"
        );
    }
    // the server is unharmed
    let live = reqwest::get(server.url("/health/live")).await.unwrap();
    assert_eq!(live.status(), StatusCode::OK);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_cap_get_503_and_the_refusals_are_counted_and_logged_once() {
    const CAP: usize = 20;
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Backend::Sqlite).await;
    let server = Server::start_with(
        dir.path(),
        &db.url,
        Some(&trained().model()),
        &[
            ("FRAUDLENS_SERVE__MAX_CONNECTIONS", &CAP.to_string()),
            ("FRAUDLENS_SERVE__HEADER_READ_TIMEOUT_SECONDS", "120"),
        ],
    );
    let address = address(&server);
    let refusals = tokio::task::spawn_blocking(move || {
        // accepted in order: the first CAP take every slot, the next ten find none
        let held: Vec<TcpStream> = (0..CAP).map(|_| TcpStream::connect(&address).unwrap()).collect();
        let refusals: Vec<String> = (0..10)
            .map(|_| {
                let mut stream = TcpStream::connect(&address).unwrap();
                read_until_closed(&mut stream, Duration::from_secs(60))
            })
            .collect();
        drop(held);
        refusals
    })
    .await
    .unwrap();
    for refusal in &refusals {
        let (status, body) = parse_response(refusal);
        assert_eq!(status, 503, "{refusal}");
        assert!(is_error_body(&body), "{refusal}");
        assert!(refusal.to_ascii_lowercase().contains("retry-after: 1"), "{refusal}");
    }
    // the held connections are gone: there is room again
    let client = reqwest::Client::new();
    let mut metrics = String::new();
    for _ in 0..100 {
        if let Ok(response) = client.get(server.url("/metrics")).send().await
            && response.status() == StatusCode::OK
        {
            metrics = response.text().await.unwrap();
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let refused: u64 = metrics
        .lines()
        .find_map(|line| line.strip_prefix("http_connections_refused_total "))
        .and_then(|count| count.trim().parse().ok())
        .unwrap_or_else(|| panic!("no refusal counter:\n{metrics}"));
    assert!(refused >= 10, "{refused}");
    assert_eq!(
        server.log().matches("connection limit reached").count(),
        1,
        "refusals are logged at most once per interval:\n{}",
        server.log()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_overload_of_batches_is_shed_with_503_and_the_accepted_ones_all_succeed() {
    const BATCH: usize = 250;
    const N_REQUESTS: usize = 40;
    let dir = tempfile::tempdir().unwrap();
    let db = TestDb::new(Backend::Sqlite).await;
    let service = key(dir.path(), &db.url, "service");
    let server = Server::start_with(
        dir.path(),
        &db.url,
        Some(&trained().model()),
        &[("FRAUDLENS_SERVE__MAX_TRANSACTIONS_IN_FLIGHT", "500")],
    );
    let store = fraudlens_store::connect(&db.url, &fraudlens_store::StoreOptions::default())
        .await
        .unwrap();
    let batches: Vec<Value> = transactions(BATCH * N_REQUESTS)
        .chunks(BATCH)
        .map(|batch| Value::Array(batch.to_vec()))
        .collect();
    let client = reqwest::Client::new();
    let url = server.url("/api/v1/transactions/batch");
    let send = |batch: Value| {
        let request = client.post(&url).header("x-api-key", &service).json(&batch);
        async move {
            let response = request.send().await.unwrap();
            let status = response.status();
            let retry_after = response.headers().get("retry-after").cloned();
            (status, retry_after, response.json::<Value>().await.unwrap())
        }
    };
    let answers = futures_util::future::join_all(batches.iter().cloned().map(send)).await;
    let mut shed = Vec::new();
    for (batch, (status, retry_after, body)) in batches.iter().zip(answers) {
        match status {
            StatusCode::OK => assert_eq!((body["scored"].as_u64(), body["failed"].as_u64()), (Some(250), Some(0))),
            StatusCode::SERVICE_UNAVAILABLE => {
                assert_eq!(body["code"], "overloaded", "{body}");
                assert!(is_error_body(&body), "{body}");
                assert!(retry_after.is_some_and(|seconds| seconds.to_str().unwrap().parse::<u64>().unwrap() >= 1));
                shed.push(batch.clone());
            }
            other => panic!("{other}: {body}"),
        }
    }
    let n_shed = shed.len();
    assert!(
        n_shed > 0,
        "{N_REQUESTS} batches of {BATCH} at once against 500 in flight: none shed"
    );
    assert!(n_shed < N_REQUESTS, "some are accepted");
    assert_eq!(
        store.count_transactions().await.unwrap() as usize,
        (N_REQUESTS - n_shed) * BATCH,
        "a shed batch stores nothing"
    );
    // retried one at a time, the shed batches all go through
    for batch in shed {
        let (status, _, body) = send(batch).await;
        assert_eq!(status, StatusCode::OK, "{body}");
    }
    assert_eq!(store.count_transactions().await.unwrap() as usize, N_REQUESTS * BATCH);
    eprintln!("overload: {n_shed} of {N_REQUESTS} batches of {BATCH} shed with 503 at 500 transactions in flight");
}
