//! Generate-root and rekey: quorum workflows over the core, with no HTTP.

use std::sync::Arc;

use serde_json::json;
use ward_core::operator::decode_root_token;
use ward_core::request::{Request, Verb};
use ward_core::{Core, CoreConfig, Error};
use ward_storage::{InMemory, Physical};

async fn initialized() -> (Arc<Core>, Vec<Vec<u8>>, String, Arc<dyn Physical>) {
    let physical: Arc<dyn Physical> = Arc::new(InMemory::new());
    ward_testlog::init("core-operator");
    let core = Core::new(
        CoreConfig::default(),
        physical.clone(),
        ward_engines::registry(),
    );
    let init = core.init(5, 3).await.expect("init");
    let keys: Vec<Vec<u8>> = init.keys.iter().map(|k| k.to_vec()).collect();
    for key in &keys[..3] {
        core.unseal(key.clone()).await.expect("unseal");
    }
    (core, keys, init.root_token.to_string(), physical)
}

async fn works(core: &Core, token: &str) -> bool {
    core.handle_request(Request::new(Verb::Read, "auth/token/lookup-self").with_token(token))
        .await
        .is_ok()
}

#[tokio::test]
async fn revoke_root_then_regenerate_it_with_a_quorum() {
    let (core, keys, root, _) = initialized().await;
    // The recommended practice: revoke the root token after setup.
    core.handle_request(Request::new(Verb::Write, "auth/token/revoke-self").with_token(&root))
        .await
        .expect("revoke");
    assert!(!works(&core, &root).await);

    let start = core.generate_root_start(None).await.expect("start");
    assert_eq!(start.otp.len(), ward_core::operator::OTP_LENGTH);
    assert!(
        core.generate_root_start(None).await.is_err(),
        "one attempt at a time"
    );
    assert!(
        core.generate_root_cancel("wrong-nonce").await.is_err(),
        "cancelling needs the nonce"
    );
    let wrong_nonce = core.generate_root_update(keys[0].clone(), "nope").await;
    assert!(matches!(wrong_nonce, Err(Error::InvalidRequest(_))));
    let one = core
        .generate_root_update(keys[0].clone(), &start.nonce)
        .await
        .expect("share 1");
    assert_eq!((one.progress, one.complete), (1, false));
    core.generate_root_update(keys[2].clone(), &start.nonce)
        .await
        .expect("share 2");
    let done = core
        .generate_root_update(keys[4].clone(), &start.nonce)
        .await
        .expect("share 3");
    assert!(done.complete);
    let token = decode_root_token(&done.encoded_token, &start.otp).expect("decode");
    assert!(token.starts_with("wrs."));
    assert!(
        works(&core, &token).await,
        "the regenerated root token works"
    );
    let lookup = core
        .handle_request(Request::new(Verb::Read, "auth/token/lookup-self").with_token(&token))
        .await
        .expect("lookup");
    assert_eq!(lookup.data.expect("data")["policies"], json!(["root"]));
    assert!(!core.generate_root_status().await.expect("status").started);
}

#[tokio::test]
async fn generate_root_with_wrong_shares_gives_nothing() {
    let (core, keys, _, _) = initialized().await;
    let start = core.generate_root_start(None).await.expect("start");
    let mut forged = keys[0].clone();
    forged[3] ^= 1;
    core.generate_root_update(forged, &start.nonce)
        .await
        .expect("1");
    core.generate_root_update(keys[1].clone(), &start.nonce)
        .await
        .expect("2");
    let r = core
        .generate_root_update(keys[2].clone(), &start.nonce)
        .await;
    assert!(matches!(r, Err(Error::InvalidRequest(_))), "{r:?}");
    assert!(
        !core.generate_root_status().await.expect("status").started,
        "a failed attempt is cleared"
    );
}

#[tokio::test]
async fn rekey_changes_shares_and_old_ones_stop_working() {
    let (core, old, root, physical) = initialized().await;
    let start = core.rekey_start(3, 2, false).await.expect("start");
    for key in &old[..2] {
        let s = core
            .rekey_update(key.clone(), &start.nonce)
            .await
            .expect("update");
        assert!(!s.complete);
    }
    let done = core
        .rekey_update(old[2].clone(), &start.nonce)
        .await
        .expect("final");
    assert!(done.complete);
    assert_eq!(done.keys.len(), 3);
    let new: Vec<Vec<u8>> = done.keys.iter().map(|k| k.to_vec()).collect();

    ward_testlog::init("core-operator");
    let restarted = Core::new(CoreConfig::default(), physical, ward_engines::registry());
    let status = restarted.seal_status().await.expect("status");
    assert_eq!((status.shares, status.threshold), (3, 2));
    restarted.unseal(old[0].clone()).await.expect("1");
    assert!(
        restarted.unseal(old[1].clone()).await.is_err(),
        "old shares no longer unseal"
    );
    restarted.unseal(new[0].clone()).await.expect("new 1");
    let s = restarted.unseal(new[2].clone()).await.expect("new 2");
    assert!(!s.sealed);
    assert!(works(&restarted, &root).await);
}

#[tokio::test]
async fn rekey_with_verification_applies_only_after_the_new_holders_prove_their_shares() {
    let (core, old, _, physical) = initialized().await;
    let start = core.rekey_start(2, 2, true).await.expect("start");
    for key in &old[..2] {
        core.rekey_update(key.clone(), &start.nonce)
            .await
            .expect("update");
    }
    let done = core
        .rekey_update(old[3].clone(), &start.nonce)
        .await
        .expect("final");
    assert!(done.verification_required);
    // Not applied yet: the old shares still unseal.
    ward_testlog::init("core-operator");
    let check = Core::new(
        CoreConfig::default(),
        physical.clone(),
        ward_engines::registry(),
    );
    assert_eq!(check.seal_status().await.expect("status").shares, 5);
    core.rekey_verify(done.keys[0].to_vec(), &done.verification_nonce)
        .await
        .expect("verify 1");
    let verified = core
        .rekey_verify(done.keys[1].to_vec(), &done.verification_nonce)
        .await
        .expect("verify 2");
    assert!(verified.complete);
    ward_testlog::init("core-operator");
    let check = Core::new(CoreConfig::default(), physical, ward_engines::registry());
    assert_eq!(check.seal_status().await.expect("status").shares, 2);
}
