//! Against a real Redis (`FRAUDLENS_TEST_REDIS`, default redis://127.0.0.1:6379):
//! concurrent read-modify-write of one entity loses no update, each write
//! gets the next version, the order list records them, and a flushed script
//! cache is reloaded.

#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use fraudlens_features::EntityRef;
use fraudlens_state::{SharedState, StateError, StateOptions, Write, Written};

fn url() -> String {
    std::env::var("FRAUDLENS_TEST_REDIS").unwrap_or_else(|_| "redis://127.0.0.1:6379".to_owned())
}

async fn state(record_order: bool) -> SharedState {
    // a fingerprint of its own per test run: keys never collide with other runs
    let fingerprint = u64::from(std::process::id()) << 32 | u64::from(rand_part());
    let state = SharedState::connect(
        &url(),
        fingerprint,
        StateOptions {
            namespace: "fraudlens-test".to_owned(),
            ttl: Duration::from_secs(60),
            record_order,
            timeout: Duration::from_secs(2),
            cache_entities: 1_000,
        },
    )
    .await
    .expect("redis at FRAUDLENS_TEST_REDIS (default 127.0.0.1:6379) must run for these tests");
    assert!(
        matches!(state.fetch(&[]).await, Err(StateError::NotBuilt)),
        "a new namespace is not built"
    );
    state.mark_built().await.unwrap();
    state
}

/// The first write of an entity: one byte of state.
fn first_write(at: EntityRef) -> Write {
    Write {
        at,
        read: 0,
        bytes: vec![1],
        applied: Vec::new(),
    }
}

fn rand_part() -> u32 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .subsec_nanos()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_lose_no_update() {
    let state = state(true).await;
    let at = EntityRef { block: 1, key: 42 };
    let (writers, increments) = (8, 25);
    let mut tasks = Vec::new();
    for writer in 0..writers {
        let state = state.clone();
        tasks.push(tokio::spawn(async move {
            let mut conflicts = 0;
            for step in 0..increments {
                loop {
                    let fetched = state.fetch(&[at]).await.unwrap().remove(0);
                    let count = fetched
                        .bytes
                        .map_or(0u64, |b| u64::from_le_bytes(b.try_into().unwrap()));
                    let write = Write {
                        at,
                        read: fetched.version,
                        bytes: (count + 1).to_le_bytes().to_vec(),
                        applied: vec![format!("w{writer}-{step}")],
                    };
                    match state.write(&[write]).await.unwrap()[0] {
                        Written::Stored(version) => {
                            if fetched.version == 0 {
                                assert!(version > 1, "an entity created anew starts at a fresh version");
                            } else {
                                assert_eq!(version, fetched.version + 1);
                            }
                            break;
                        }
                        Written::Conflict(now) => {
                            assert!(now > fetched.version, "a conflict means someone wrote after the read");
                            conflicts += 1;
                        }
                    }
                }
            }
            conflicts
        }));
    }
    let mut conflicts = 0;
    for task in tasks {
        conflicts += task.await.unwrap();
    }
    let fetched = state.fetch(&[at]).await.unwrap().remove(0);
    let total = writers * increments;
    let order = state.applied_order(at).await.unwrap();
    let first: u64 = order[0].split(' ').next().unwrap().parse().unwrap();
    assert_eq!(fetched.version, first + total as u64 - 1);
    assert_eq!(
        u64::from_le_bytes(fetched.bytes.unwrap().try_into().unwrap()),
        total as u64
    );
    // the concurrency was real: some writers had to redo (positive control of the check)
    assert!(
        conflicts > 0,
        "no conflict in {total} concurrent writes: the test did not race"
    );
    assert_eq!(order.len(), total);
    for (idx, line) in order.iter().enumerate() {
        assert!(line.starts_with(&format!("{} w", first + idx as u64)), "{line}");
    }
}

#[tokio::test]
async fn a_stale_write_is_refused_and_a_missing_entity_reads_as_version_zero() {
    let state = state(false).await;
    let (a, b) = (EntityRef { block: 0, key: 1 }, EntityRef { block: 0, key: 2 });
    let fetched = state.fetch(&[a, b]).await.unwrap();
    assert_eq!(fetched[0].version, 0);
    assert_eq!(fetched[0].bytes, None);
    let write = |at, read, byte: u8| Write {
        at,
        read,
        bytes: vec![byte],
        applied: Vec::new(),
    };
    let written = state.write(&[write(a, 0, 1), write(b, 0, 1)]).await.unwrap();
    let [Written::Stored(va), Written::Stored(vb)] = written[..] else {
        panic!("{written:?}")
    };
    // a second writer that read before the first wrote
    assert_eq!(
        state.write(&[write(a, 0, 2), write(b, vb, 2)]).await.unwrap(),
        vec![Written::Conflict(va), Written::Stored(vb + 1)]
    );
    let fetched = state.fetch(&[a, b]).await.unwrap();
    assert_eq!((fetched[0].version, fetched[0].bytes.clone()), (va, Some(vec![1])));
    assert_eq!((fetched[1].version, fetched[1].bytes.clone()), (vb + 1, Some(vec![2])));
    assert!(
        state.applied_order(a).await.unwrap().is_empty(),
        "nothing recorded without record_order"
    );
}

#[tokio::test]
async fn a_flushed_script_cache_is_reloaded() {
    let state = state(false).await;
    let client = redis::Client::open(url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = redis::cmd("SCRIPT")
        .arg("FLUSH")
        .query_async(&mut connection)
        .await
        .unwrap();
    let at = EntityRef { block: 0, key: 7 };
    let written = state.write(&[first_write(at)]).await.unwrap();
    assert!(matches!(written[..], [Written::Stored(_)]), "{written:?}");
    let ttl: i64 = redis::cmd("PTTL")
        .arg(state.key(at))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(ttl > 0 && ttl <= 60_000, "the entity expires after the ttl: {ttl}");
}

#[tokio::test]
async fn a_flushed_namespace_is_not_built_until_rebuilt_and_one_process_rebuilds() {
    let state = state(false).await;
    let at = EntityRef { block: 0, key: 9 };
    let written = state.write(&[first_write(at)]).await.unwrap();
    assert_eq!(
        written,
        vec![Written::Stored(state.fetch(&[at]).await.unwrap()[0].version)]
    );
    // Redis loses its data
    let client = redis::Client::open(url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    let keys: Vec<String> = redis::cmd("KEYS")
        .arg(format!("{}*", state.key(at).rsplitn(3, ':').last().unwrap()))
        .query_async(&mut connection)
        .await
        .unwrap();
    assert!(!keys.is_empty());
    let _: () = redis::cmd("DEL").arg(&keys).query_async(&mut connection).await.unwrap();
    assert!(matches!(state.fetch(&[at]).await, Err(StateError::NotBuilt)));
    assert!(matches!(
        state.fetch_probing(&[at], &[true]).await,
        Err(StateError::NotBuilt)
    ));
    // one rebuilder at a time
    assert!(state.lock_rebuild("p1", Duration::from_secs(10)).await.unwrap());
    assert!(!state.lock_rebuild("p2", Duration::from_secs(10)).await.unwrap());
    state.unlock_rebuild("p2").await.unwrap();
    assert!(
        !state.lock_rebuild("p2", Duration::from_secs(10)).await.unwrap(),
        "only the holder unlocks"
    );
    state.overwrite(&[(at, vec![7])]).await.unwrap();
    state.mark_built().await.unwrap();
    state.unlock_rebuild("p1").await.unwrap();
    assert!(state.lock_rebuild("p2", Duration::from_secs(10)).await.unwrap());
    let fetched = state.fetch(&[at]).await.unwrap().remove(0);
    assert_eq!(fetched.bytes, Some(vec![7]));
}

#[tokio::test]
async fn a_probe_answers_the_version_alone_and_each_build_has_its_own_token() {
    let state = state(false).await;
    let (a, b, absent) = (
        EntityRef { block: 0, key: 11 },
        EntityRef { block: 1, key: 11 },
        EntityRef { block: 0, key: 12 },
    );
    let written = state.write(&[first_write(a), first_write(b)]).await.unwrap();
    let [Written::Stored(va), Written::Stored(vb)] = written[..] else {
        panic!("{written:?}")
    };
    let written = state
        .write(&[Write {
            at: a,
            read: va,
            bytes: vec![2, 3],
            applied: Vec::new(),
        }])
        .await
        .unwrap();
    assert_eq!(written, vec![Written::Stored(va + 1)]);
    let fetch = state
        .fetch_probing(&[a, b, absent], &[true, false, true])
        .await
        .unwrap();
    let got: Vec<(u64, Option<Vec<u8>>)> = fetch
        .entities
        .iter()
        .map(|fetched| (fetched.version, fetched.bytes.clone()))
        .collect();
    assert_eq!(got, vec![(va + 1, None), (vb, Some(vec![1])), (0, None)]);
    let first = fetch.build;
    assert!(!first.is_empty());
    assert_eq!(state.fetch_probing(&[a], &[false]).await.unwrap().build, first);
    state.mark_built().await.unwrap();
    let second = state.fetch_probing(&[a], &[true]).await.unwrap().build;
    assert_ne!(second, first, "a rebuild draws a new token");
}

/// An entity whose key expired (here: deleted) and is created again never
/// comes back at a version it had: a process that kept the old one must not
/// take the new one for it.
#[tokio::test]
async fn an_entity_created_again_never_comes_back_at_a_version_it_had() {
    let state = state(false).await;
    let at = EntityRef { block: 0, key: 21 };
    let mut seen = Vec::new();
    let client = redis::Client::open(url()).unwrap();
    let mut connection = client.get_multiplexed_async_connection().await.unwrap();
    for life in 0..3u8 {
        let written = state.write(&[first_write(at)]).await.unwrap();
        let [Written::Stored(version)] = written[..] else {
            panic!("{written:?}")
        };
        let again = state
            .write(&[Write {
                at,
                read: version,
                bytes: vec![life],
                applied: Vec::new(),
            }])
            .await
            .unwrap();
        assert_eq!(again, vec![Written::Stored(version + 1)]);
        assert!(
            seen.iter().all(|old| *old != version && *old != version + 1),
            "life {life}: {version} was a version before: {seen:?}"
        );
        seen.extend([version, version + 1]);
        // the key expires
        let _: i64 = redis::cmd("DEL")
            .arg(state.key(at))
            .query_async(&mut connection)
            .await
            .unwrap();
        tokio::time::sleep(Duration::from_millis(2)).await;
    }
    assert!(seen.windows(2).all(|pair| pair[0] < pair[1]), "{seen:?}");
}
