//! The storage conformance suite: one set of cases that every [`Physical`] backend must pass.
//!
//! `conformance_suite!` turns each case into a test per backend, so a failure names both.
//! A backend only provides a constructor; backends with a file behind them also get the
//! reopen cases, which check that everything acknowledged is there after a restart.
#![allow(clippy::unwrap_used)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use ward_storage::fault::FaultInjector;
use ward_storage::sqlite::Sqlite;
use ward_storage::{InMemory, Physical, StorageError, TxOp};

type Store = Arc<dyn Physical>;

/// A backend under test, and whatever keeps it alive (a temporary directory).
struct Backend {
    store: Store,
    _keep: Option<tempfile::TempDir>,
}

fn inmem() -> Backend {
    Backend {
        store: Arc::new(InMemory::new()),
        _keep: None,
    }
}

fn sqlite() -> Backend {
    let dir = tempfile::tempdir().unwrap();
    let store = Sqlite::open(dir.path().join("ward.db")).unwrap();
    Backend {
        store: Arc::new(store),
        _keep: Some(dir),
    }
}

fn fault_off() -> Backend {
    Backend {
        store: Arc::new(FaultInjector::new(Arc::new(InMemory::new()))),
        _keep: None,
    }
}

fn fault_off_over_sqlite() -> Backend {
    let Backend { store, _keep } = sqlite();
    Backend {
        store: Arc::new(FaultInjector::new(store)),
        _keep,
    }
}

macro_rules! conformance_suite {
    ($backend:ident: $($case:ident),* $(,)?) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
                async fn $case() {
                    let backend = super::$backend();
                    super::cases::$case(&backend.store).await;
                }
            )*
        }
    };
}

macro_rules! all_cases {
    ($($backend:ident),*) => {
        $(
            conformance_suite!($backend:
                get_put_overwrite_delete,
                empty_values_are_values_not_absence,
                empty_keys_are_invalid,
                list_is_sorted_with_folders,
                list_key_that_is_both_value_and_folder,
                list_prefix_not_on_a_slash_boundary,
                list_empty_prefix,
                list_unicode_and_odd_bytes,
                list_treats_like_wildcards_literally,
                list_and_scan_match_a_model_on_random_keys,
                scan_pages_through_a_prefix,
                scan_after_and_limit_edges,
                transaction_is_all_or_nothing,
                transaction_applies_ops_in_order,
                large_values_round_trip,
                concurrent_writers_are_all_acknowledged_and_readable,
            );
        )*
    };
}

all_cases!(inmem, sqlite, fault_off, fault_off_over_sqlite);

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_reopen_shows_every_acknowledged_write() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ward.db");
    let expected = {
        let store: Arc<dyn Physical> = Arc::new(Sqlite::open(&path).unwrap());
        let expected = cases::write_concurrently(&store, 32, 25).await;
        store.put("big", vec![0xA5; 1 << 20]).await.unwrap();
        store.put("gone", b"x".to_vec()).await.unwrap();
        store.delete("gone").await.unwrap();
        store
            .transaction(vec![
                TxOp::Put {
                    key: "tx/a".into(),
                    value: b"a".to_vec(),
                },
                TxOp::Put {
                    key: "tx/b".into(),
                    value: b"b".to_vec(),
                },
            ])
            .await
            .unwrap();
        expected
    };
    let store = Sqlite::open(&path).unwrap();
    for (key, value) in &expected {
        assert_eq!(store.get(key).await.unwrap().as_ref(), Some(value), "{key}");
    }
    assert_eq!(store.get("big").await.unwrap(), Some(vec![0xA5; 1 << 20]));
    assert_eq!(store.get("gone").await.unwrap(), None);
    assert_eq!(store.list("tx/").await.unwrap(), ["a", "b"]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sqlite_reopen_while_another_handle_is_open_sees_the_same_data() {
    // A second process (or `ward operator` tooling) opening the file must see what the
    // first acknowledged, without waiting for it to close.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("ward.db");
    let first = Sqlite::open(&path).unwrap();
    first.put("k", b"v".to_vec()).await.unwrap();
    let second = Sqlite::open(&path).unwrap();
    assert_eq!(second.get("k").await.unwrap(), Some(b"v".to_vec()));
    second.put("k2", b"v2".to_vec()).await.unwrap();
    assert_eq!(first.list("").await.unwrap(), ["k", "k2"]);
}

mod cases {
    use super::*;

    fn put(key: &str, value: &[u8]) -> TxOp {
        TxOp::Put {
            key: key.into(),
            value: value.to_vec(),
        }
    }

    fn delete(key: &str) -> TxOp {
        TxOp::Delete { key: key.into() }
    }

    async fn put_all(store: &Store, keys: &[&str]) {
        let ops = keys.iter().map(|key| put(key, key.as_bytes())).collect();
        store.transaction(ops).await.unwrap();
    }

    pub(super) async fn get_put_overwrite_delete(store: &Store) {
        assert_eq!(store.get("a/b").await.unwrap(), None);
        store.put("a/b", b"one".to_vec()).await.unwrap();
        assert_eq!(store.get("a/b").await.unwrap(), Some(b"one".to_vec()));
        store.put("a/b", b"two".to_vec()).await.unwrap();
        assert_eq!(store.get("a/b").await.unwrap(), Some(b"two".to_vec()));
        // A prefix of a key, or a key below it, is not the key.
        assert_eq!(store.get("a").await.unwrap(), None);
        assert_eq!(store.get("a/").await.unwrap(), None);
        assert_eq!(store.get("a/b/").await.unwrap(), None);
        store.delete("a/b").await.unwrap();
        assert_eq!(store.get("a/b").await.unwrap(), None);
        // Deleting an absent key succeeds, also twice.
        store.delete("a/b").await.unwrap();
        store.delete("never/there").await.unwrap();
        assert_eq!(store.list("").await.unwrap(), Vec::<String>::new());
    }

    pub(super) async fn empty_values_are_values_not_absence(store: &Store) {
        store.put("empty", Vec::new()).await.unwrap();
        assert_eq!(store.get("empty").await.unwrap(), Some(Vec::new()));
        assert_eq!(store.list("").await.unwrap(), ["empty"]);
        let bytes: Vec<u8> = (0..=255).collect();
        store.put("bytes", bytes.clone()).await.unwrap();
        assert_eq!(store.get("bytes").await.unwrap(), Some(bytes));
    }

    pub(super) async fn empty_keys_are_invalid(store: &Store) {
        assert!(matches!(
            store.put("", b"v".to_vec()).await,
            Err(StorageError::Invalid(_))
        ));
        assert_eq!(store.get("").await.unwrap(), None);
        assert_eq!(store.scan("", "", 10).await.unwrap(), Vec::<String>::new());
    }

    pub(super) async fn list_is_sorted_with_folders(store: &Store) {
        put_all(
            store,
            &[
                "secret/zeta",
                "secret/alpha",
                "secret/db/prod/password",
                "secret/db/dev",
                "secret/b/x",
                "secret/Upper",
                "secretive",
                "secret",
                "other/x",
            ],
        )
        .await;
        assert_eq!(
            store.list("secret/").await.unwrap(),
            ["Upper", "alpha", "b/", "db/", "zeta"]
        );
        assert_eq!(store.list("secret/db/").await.unwrap(), ["dev", "prod/"]);
        assert_eq!(store.list("secret/db/prod/").await.unwrap(), ["password"]);
        assert_eq!(
            store.list("secret/db/prod/password/").await.unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(store.list("nothing/").await.unwrap(), Vec::<String>::new());
        // The key equal to the prefix is not one of its children.
        assert_eq!(
            store.list("secret/zeta").await.unwrap(),
            Vec::<String>::new()
        );
    }

    pub(super) async fn list_key_that_is_both_value_and_folder(store: &Store) {
        put_all(store, &["p/a", "p/a/b", "p/a/c/d", "p/a!", "p/a0", "p/b/"]).await;
        // "a!" sorts before "a/", which sorts before "a0".
        assert_eq!(
            store.list("p/").await.unwrap(),
            ["a", "a!", "a/", "a0", "b/"]
        );
        assert_eq!(store.list("p/a/").await.unwrap(), ["b", "c/"]);
        // A key that ends in a slash is listed as the folder, once.
        assert_eq!(store.list("p/b/").await.unwrap(), Vec::<String>::new());
        put_all(store, &["p/b/x"]).await;
        assert_eq!(
            store.list("p/").await.unwrap(),
            ["a", "a!", "a/", "a0", "b/"]
        );
        assert_eq!(store.get("p/b/").await.unwrap(), Some(b"p/b/".to_vec()));
    }

    pub(super) async fn list_prefix_not_on_a_slash_boundary(store: &Store) {
        put_all(
            store,
            &["foo1", "foo2/x", "foo2/y", "foobar", "fo", "fop/z"],
        )
        .await;
        assert_eq!(store.list("foo").await.unwrap(), ["1", "2/", "bar"]);
        assert_eq!(store.list("fo").await.unwrap(), ["o1", "o2/", "obar", "p/"]);
        assert_eq!(store.list("foo2").await.unwrap(), ["/"]);
        assert_eq!(store.list("foo2/").await.unwrap(), ["x", "y"]);
    }

    pub(super) async fn list_empty_prefix(store: &Store) {
        assert_eq!(store.list("").await.unwrap(), Vec::<String>::new());
        put_all(store, &["b", "a/x", "a/y/z", "c/d", "/rooted"]).await;
        assert_eq!(store.list("").await.unwrap(), ["/", "a/", "b", "c/"]);
        assert_eq!(store.list("/").await.unwrap(), ["rooted"]);
    }

    pub(super) async fn list_unicode_and_odd_bytes(store: &Store) {
        let keys = [
            "u/über",
            "u/ünder/x",
            "u/日本/語",
            "u/日本語",
            "u/🎉",
            "u/\u{10FFFF}",
            "u/\u{FFFF}/x",
            "u/\u{7F}",
            "u/\u{0}nul",
            "u/\u{1}",
            "u/tab\there",
            "u/new\nline",
            "u/sp ace",
            "u/quote'\"",
            "u/back\\slash/",
            "u/dot.",
        ];
        put_all(store, &keys).await;
        let mut expected: Vec<&str> = vec![
            "über",
            "ünder/",
            "日本/",
            "日本語",
            "🎉",
            "\u{10FFFF}",
            "\u{FFFF}/",
            "\u{7F}",
            "\u{0}nul",
            "\u{1}",
            "tab\there",
            "new\nline",
            "sp ace",
            "quote'\"",
            "back\\slash/",
            "dot.",
        ];
        // Byte order of UTF-8 is code point order.
        expected.sort_unstable();
        assert_eq!(store.list("u/").await.unwrap(), expected);
        assert_eq!(store.list("u/日").await.unwrap(), ["本/", "本語"]);
        assert_eq!(store.list("u/日本/").await.unwrap(), ["語"]);
        assert_eq!(store.list("u/\u{0}").await.unwrap(), ["nul"]);
        for key in keys {
            assert_eq!(store.get(key).await.unwrap(), Some(key.as_bytes().to_vec()));
        }
        let scanned = store.scan("u/", "", 100).await.unwrap();
        let mut sorted: Vec<String> = keys.iter().map(|key| key.to_string()).collect();
        sorted.sort_unstable();
        assert_eq!(scanned, sorted);
    }

    pub(super) async fn list_treats_like_wildcards_literally(store: &Store) {
        put_all(store, &["a%b/x", "a_b", "axb", "a%c", "abb/y", "a\\b"]).await;
        assert_eq!(store.list("a%").await.unwrap(), ["b/", "c"]);
        assert_eq!(store.list("a_").await.unwrap(), ["b"]);
        assert_eq!(store.list("a%b/").await.unwrap(), ["x"]);
        assert_eq!(store.list("a\\").await.unwrap(), ["b"]);
        assert_eq!(store.scan("a_", "", 10).await.unwrap(), ["a_b"]);
        assert_eq!(store.scan("a%", "", 10).await.unwrap(), ["a%b/x", "a%c"]);
        assert_eq!(store.list("%").await.unwrap(), Vec::<String>::new());
        assert_eq!(store.list("_").await.unwrap(), Vec::<String>::new());
    }

    /// A tiny deterministic generator: the suite needs no `rand`.
    struct XorShift(u64);

    impl XorShift {
        fn next(&mut self) -> u64 {
            self.0 ^= self.0 << 13;
            self.0 ^= self.0 >> 7;
            self.0 ^= self.0 << 17;
            self.0
        }

        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    fn model_children(model: &BTreeMap<String, Vec<u8>>, prefix: &str) -> Vec<String> {
        let children: BTreeSet<String> = model
            .keys()
            .filter_map(|key| key.strip_prefix(prefix))
            .filter(|rest| !rest.is_empty())
            .map(|rest| match rest.find('/') {
                Some(slash) => rest[..=slash].to_string(),
                None => rest.to_string(),
            })
            .collect();
        children.into_iter().collect()
    }

    pub(super) async fn list_and_scan_match_a_model_on_random_keys(store: &Store) {
        // Few distinct characters, so keys share prefixes, collide with folders, and sit on
        // both sides of '/' in byte order ('.' < '/' < '0').
        const ALPHABET: [&str; 10] = ["a", "b", "/", ".", "0", "%", "_", "é", "\u{0}", "😀"];
        let mut random = XorShift(0x9E37_79B9_7F4A_7C15);
        let mut model: BTreeMap<String, Vec<u8>> = BTreeMap::new();
        let mut ops = Vec::new();
        for _ in 0..1500 {
            let len = 1 + random.below(7);
            let key: String = (0..len)
                .map(|_| ALPHABET[random.below(ALPHABET.len())])
                .collect();
            let value = key.as_bytes().to_vec();
            model.insert(key.clone(), value.clone());
            ops.push(TxOp::Put { key, value });
        }
        store.transaction(ops).await.unwrap();
        // Delete some, so the store has holes the model also has.
        let doomed: Vec<String> = model.keys().step_by(7).cloned().collect();
        for key in &doomed {
            store.delete(key).await.unwrap();
            model.remove(key);
        }

        let mut prefixes: Vec<String> = vec![String::new()];
        for key in model.keys().step_by(11) {
            let chars: Vec<char> = key.chars().collect();
            let cut = random.below(chars.len() + 1);
            prefixes.push(chars[..cut].iter().collect());
        }
        prefixes.extend(["/", "a/", "%", "_", "é", "\u{0}", "zz", "😀/"].map(String::from));
        for prefix in &prefixes {
            assert_eq!(
                store.list(prefix).await.unwrap(),
                model_children(&model, prefix),
                "list({prefix:?})"
            );
            let expected: Vec<String> = model
                .keys()
                .filter(|key| key.starts_with(prefix.as_str()))
                .cloned()
                .collect();
            // Walk the prefix in pages of a random size.
            let page = 1 + random.below(40);
            let mut walked = Vec::new();
            let mut after = String::new();
            loop {
                let keys = store.scan(prefix, &after, page).await.unwrap();
                assert!(keys.len() <= page);
                let Some(last) = keys.last() else { break };
                after = last.clone();
                walked.extend(keys);
            }
            assert_eq!(walked, expected, "scan({prefix:?}) in pages of {page}");
        }
    }

    pub(super) async fn scan_pages_through_a_prefix(store: &Store) {
        let mut inside: Vec<String> = (0..250).map(|i| format!("s/{i:04}")).collect();
        inside.push("s/".into());
        inside.push("s/deep/er/key".into());
        let outside = ["s", "r/z", "s.", "s0", "t/a", "S/a"];
        let all: Vec<String> = inside
            .iter()
            .cloned()
            .chain(outside.map(String::from))
            .collect();
        put_all(store, &all.iter().map(String::as_str).collect::<Vec<_>>()).await;
        inside.sort();

        let mut walked: Vec<String> = Vec::new();
        let mut after = String::new();
        let mut n_pages = 0;
        loop {
            let keys = store.scan("s/", &after, 16).await.unwrap();
            if keys.is_empty() {
                break;
            }
            assert!(keys.len() <= 16);
            assert!(keys.windows(2).all(|pair| pair[0] < pair[1]), "sorted");
            after = keys.last().unwrap().clone();
            walked.extend(keys);
            n_pages += 1;
        }
        assert_eq!(walked, inside);
        assert_eq!(n_pages, 16);
        // The empty prefix walks everything, in byte order.
        let mut everything = all.clone();
        everything.sort();
        assert_eq!(store.scan("", "", usize::MAX).await.unwrap(), everything);
    }

    pub(super) async fn scan_after_and_limit_edges(store: &Store) {
        put_all(store, &["k/a", "k/b", "k/c", "k/d", "k0", "j/z"]).await;
        assert_eq!(store.scan("k/", "", 0).await.unwrap(), Vec::<String>::new());
        assert_eq!(store.scan("k/", "", 2).await.unwrap(), ["k/a", "k/b"]);
        // Strictly after, whether or not `after` exists.
        assert_eq!(store.scan("k/", "k/b", 10).await.unwrap(), ["k/c", "k/d"]);
        assert_eq!(store.scan("k/", "k/bb", 10).await.unwrap(), ["k/c", "k/d"]);
        assert_eq!(
            store.scan("k/", "k/d", 10).await.unwrap(),
            Vec::<String>::new()
        );
        // `after` before the prefix starts at the prefix; after it, nothing is left.
        assert_eq!(store.scan("k/", "a", 10).await.unwrap().len(), 4);
        assert_eq!(store.scan("k/", "k", 10).await.unwrap().len(), 4);
        assert_eq!(store.scan("k/", "k/", 10).await.unwrap().len(), 4);
        assert_eq!(
            store.scan("k/", "k0", 10).await.unwrap(),
            Vec::<String>::new()
        );
        assert_eq!(
            store.scan("k/", "z", 10).await.unwrap(),
            Vec::<String>::new()
        );
        // A prefix that is not on a slash boundary.
        assert_eq!(store.scan("k", "", 10).await.unwrap().len(), 5);
        assert_eq!(store.scan("k", "k/d", 10).await.unwrap(), ["k0"]);
        assert_eq!(
            store.scan("nothing", "", 10).await.unwrap(),
            Vec::<String>::new()
        );
    }

    pub(super) async fn transaction_is_all_or_nothing(store: &Store) {
        store.put("keep", b"old".to_vec()).await.unwrap();
        let outcome = store
            .transaction(vec![
                put("new", b"1"),
                put("keep", b"new"),
                put("", b"invalid"),
                delete("keep"),
            ])
            .await;
        assert!(
            matches!(outcome, Err(StorageError::Invalid(_))),
            "{outcome:?}"
        );
        assert_eq!(store.get("new").await.unwrap(), None);
        assert_eq!(store.get("keep").await.unwrap(), Some(b"old".to_vec()));
        assert_eq!(store.list("").await.unwrap(), ["keep"]);
        // The store still works after a rejected transaction.
        store
            .transaction(vec![put("new", b"1"), delete("keep")])
            .await
            .unwrap();
        assert_eq!(store.list("").await.unwrap(), ["new"]);
        store.transaction(Vec::new()).await.unwrap();
    }

    pub(super) async fn transaction_applies_ops_in_order(store: &Store) {
        store
            .transaction(vec![put("a", b"1"), delete("a")])
            .await
            .unwrap();
        assert_eq!(store.get("a").await.unwrap(), None);
        store
            .transaction(vec![delete("b"), put("b", b"2")])
            .await
            .unwrap();
        assert_eq!(store.get("b").await.unwrap(), Some(b"2".to_vec()));
        store
            .transaction(vec![put("c", b"1"), put("c", b"2"), put("c", b"3")])
            .await
            .unwrap();
        assert_eq!(store.get("c").await.unwrap(), Some(b"3".to_vec()));
        store
            .transaction(vec![delete("c"), put("c", b"4"), delete("b")])
            .await
            .unwrap();
        assert_eq!(store.get("c").await.unwrap(), Some(b"4".to_vec()));
        assert_eq!(store.list("").await.unwrap(), ["c"]);
    }

    pub(super) async fn large_values_round_trip(store: &Store) {
        let mebibyte: Vec<u8> = (0..1u32 << 20).map(|i| (i * 7 + i / 251) as u8).collect();
        store.put("large/one", mebibyte.clone()).await.unwrap();
        let mut other = mebibyte.clone();
        other.reverse();
        other.extend_from_slice(b"tail");
        store
            .transaction(vec![put("large/two", &other), put("large/small", b"s")])
            .await
            .unwrap();
        assert_eq!(store.get("large/one").await.unwrap(), Some(mebibyte));
        assert_eq!(store.get("large/two").await.unwrap(), Some(other));
        assert_eq!(store.list("large/").await.unwrap(), ["one", "small", "two"]);
    }

    /// Writes `n_writers × n_each` distinct keys from concurrent tasks and returns them.
    pub(super) async fn write_concurrently(
        store: &Store,
        n_writers: usize,
        n_each: usize,
    ) -> BTreeMap<String, Vec<u8>> {
        let tasks: Vec<_> = (0..n_writers)
            .map(|writer| {
                let store = Arc::clone(store);
                tokio::spawn(async move {
                    let mut written = Vec::new();
                    for i in 0..n_each {
                        let key = format!("c/{writer:02}/{i:03}");
                        let value = format!("value of {key}").into_bytes();
                        store.put(&key, value.clone()).await.unwrap();
                        written.push((key, value));
                    }
                    written
                })
            })
            .collect();
        let mut expected = BTreeMap::new();
        for task in tasks {
            expected.extend(task.await.unwrap());
        }
        expected
    }

    pub(super) async fn concurrent_writers_are_all_acknowledged_and_readable(store: &Store) {
        let expected = write_concurrently(store, 32, 20).await;
        assert_eq!(expected.len(), 640);
        for (key, value) in &expected {
            assert_eq!(store.get(key).await.unwrap().as_ref(), Some(value), "{key}");
        }
        let listed = store.list("c/").await.unwrap();
        assert_eq!(listed.len(), 32);
        assert_eq!(
            store.scan("c/", "", usize::MAX).await.unwrap(),
            expected.keys().cloned().collect::<Vec<_>>()
        );
    }
}
