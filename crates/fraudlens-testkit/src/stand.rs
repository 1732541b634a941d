//! A stand-in HTTP/1.1 server for one test: it answers each request with
//! what the test's handler says (status, headers, body, after a delay) and
//! keeps what it was sent. For the outside services fraudlens talks to
//! that cannot run here (a hosted Ethereum provider, an LLM API).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

/// One request as received.
#[derive(Clone, Debug)]
pub struct Received {
    /// The request line and headers, as text.
    pub head: String,
    /// The body.
    pub body: Vec<u8>,
}

impl Received {
    /// The body as JSON (panics when it is not).
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_slice(&self.body).expect("a JSON request body")
    }
}

/// What to answer.
#[derive(Clone, Debug)]
pub struct Answer {
    /// The status.
    pub status: u16,
    /// Headers besides content type and length.
    pub headers: Vec<(String, String)>,
    /// The body (sent as `application/json`).
    pub body: String,
    /// How long to wait before answering.
    pub delay: Duration,
}

impl Answer {
    /// `status` with `body` at once.
    pub fn new(status: u16, body: impl Into<String>) -> Self {
        Self {
            status,
            headers: Vec::new(),
            body: body.into(),
            delay: Duration::ZERO,
        }
    }

    /// With a header.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        self.headers.push((name.to_owned(), value.to_owned()));
        self
    }

    /// After `delay`.
    pub fn after(mut self, delay: Duration) -> Self {
        self.delay = delay;
        self
    }
}

/// The handler: a request in, an answer out.
pub type Handler = Arc<dyn Fn(&Received) -> Answer + Send + Sync>;

/// A running stand-in on a free port of 127.0.0.1.
pub struct Stand {
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    requests: Arc<AtomicUsize>,
    received: Arc<Mutex<Vec<Received>>>,
}

impl Stand {
    /// Starts answering with `handler`.
    pub async fn start(handler: Handler) -> Self {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let requests = Arc::new(AtomicUsize::new(0));
        let received: Arc<Mutex<Vec<Received>>> = Arc::default();
        let (count, log) = (requests.clone(), received.clone());
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = listener.accept().await {
                let (handler, count, log) = (handler.clone(), count.clone(), log.clone());
                tokio::spawn(async move {
                    let Some(request) = read(&mut socket).await else { return };
                    count.fetch_add(1, Ordering::SeqCst);
                    log.lock().unwrap().push(request.clone());
                    let answer = handler(&request);
                    tokio::time::sleep(answer.delay).await;
                    let mut head = format!(
                        "HTTP/1.1 {} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n",
                        answer.status,
                        answer.body.len()
                    );
                    for (name, value) in &answer.headers {
                        head.push_str(&format!("{name}: {value}\r\n"));
                    }
                    head.push_str("\r\n");
                    let _ = socket.write_all(head.as_bytes()).await;
                    let _ = socket.write_all(answer.body.as_bytes()).await;
                });
            }
        });
        Self {
            base,
            requests,
            received,
        }
    }

    /// Requests answered so far.
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    /// Every request received, in order.
    pub fn received(&self) -> Vec<Received> {
        self.received.lock().unwrap().clone()
    }
}

/// Reads one request: head and a `content-length` body.
async fn read(socket: &mut tokio::net::TcpStream) -> Option<Received> {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let n = socket.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        buffer.extend_from_slice(&chunk[..n]);
        let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") else {
            continue;
        };
        let head = String::from_utf8_lossy(&buffer[..end]).into_owned();
        let length: usize = head
            .lines()
            .find_map(|line| {
                let (name, value) = line.split_once(':')?;
                name.eq_ignore_ascii_case("content-length")
                    .then(|| value.trim().parse().ok())?
            })
            .unwrap_or(0);
        if buffer.len() >= end + 4 + length {
            return Some(Received {
                head,
                body: buffer[end + 4..end + 4 + length].to_vec(),
            });
        }
    }
}
