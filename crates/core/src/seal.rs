//! The seal: initialisation, the unseal-key quorum, and the root key.
//!
//! At `sys/init` a random unseal key is split with Shamir's scheme into key shares; a random
//! root key, encrypted by the unseal key, is stored beside the seal configuration, and the
//! root key in turn encrypts the barrier's keyring. Unsealing collects shares until the
//! threshold is reached, recombines the unseal key, decrypts the root key and hands it to the
//! barrier. Nothing of the unseal key is kept once the barrier is open.

use std::sync::Mutex;

use rand::RngCore;
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;
use ward_storage::Physical;
use zeroize::Zeroizing;

use crate::barrier::{open_bytes, seal_bytes, Barrier, Key};
use crate::error::Error;
use crate::shamir;

/// Unseal key shares, each zeroized on drop.
pub(crate) type KeyShares = Vec<Zeroizing<Vec<u8>>>;

const SEAL_CONFIG_PATH: &str = "core/seal-config";
const ROOT_KEY_PATH: &str = "core/root-key";

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub(crate) struct SealConfig {
    pub(crate) secret_shares: u32,
    pub(crate) secret_threshold: u32,
    pub(crate) cluster_id: String,
}

/// Progress towards unsealing: the shares submitted so far.
#[derive(Default)]
struct Progress {
    shares: Vec<Zeroizing<Vec<u8>>>,
    nonce: String,
}

#[derive(Default)]
pub(crate) struct Seal {
    progress: Mutex<Progress>,
}

/// The outcome of submitting one unseal share.
pub(crate) enum Unseal {
    /// More shares are needed.
    Progress,
    /// The barrier is open.
    Unsealed,
}

impl Seal {
    pub(crate) async fn config(physical: &dyn Physical) -> Result<Option<SealConfig>, Error> {
        match physical.get(SEAL_CONFIG_PATH).await? {
            None => Ok(None),
            Some(bytes) => serde_json::from_slice(&bytes)
                .map(Some)
                .map_err(|_| Error::internal("seal configuration is corrupt")),
        }
    }

    /// Creates the keys, initialises the barrier (leaving it unsealed) and returns the shares.
    pub(crate) async fn initialize(
        barrier: &Barrier,
        shares: u32,
        threshold: u32,
        now: i64,
    ) -> Result<Vec<Zeroizing<Vec<u8>>>, Error> {
        validate(shares, threshold)?;
        if Seal::config(barrier.physical().as_ref()).await?.is_some() {
            return Err(Error::invalid("Vault is already initialized"));
        }
        let unseal_key = Key::generate();
        let key_shares = if shares == 1 {
            vec![Zeroizing::new(unseal_key.as_bytes().to_vec())]
        } else {
            // Both fit in u8: validate() bounds them by 255.
            shamir::split(unseal_key.as_bytes(), shares as u8, threshold as u8)
                .map_err(|e| Error::invalid(e.to_string()))?
        };
        let root_key = Key::generate();
        let sealed_root = seal_bytes(
            &unseal_key,
            0,
            ROOT_KEY_PATH.as_bytes(),
            root_key.as_bytes(),
        )?;
        barrier.physical().put(ROOT_KEY_PATH, sealed_root).await?;
        barrier.initialize(root_key, now).await?;
        let mut cluster_id = [0u8; 16];
        rand::rngs::OsRng.fill_bytes(&mut cluster_id);
        let config = SealConfig {
            secret_shares: shares,
            secret_threshold: threshold,
            cluster_id: uuid::Uuid::from_bytes(cluster_id).to_string(),
        };
        // Written last: a crash before this point leaves the server uninitialised, not half-set.
        let bytes = serde_json::to_vec(&config).map_err(|e| Error::internal(e.to_string()))?;
        barrier.physical().put(SEAL_CONFIG_PATH, bytes).await?;
        Ok(key_shares)
    }

    /// A fresh unseal key and its shares, not yet in use (the first half of a rekey).
    pub(crate) fn new_unseal_key(shares: u32, threshold: u32) -> Result<(Key, KeyShares), Error> {
        validate(shares, threshold)?;
        let unseal_key = Key::generate();
        let key_shares = if shares == 1 {
            vec![Zeroizing::new(unseal_key.as_bytes().to_vec())]
        } else {
            shamir::split(unseal_key.as_bytes(), shares as u8, threshold as u8)
                .map_err(|e| Error::invalid(e.to_string()))?
        };
        Ok((unseal_key, key_shares))
    }

    /// Re-encrypts the root key under `unseal_key` and records the new share counts, in one
    /// atomic write (the second half of a rekey).
    pub(crate) async fn commit_rekey(
        barrier: &Barrier,
        unseal_key: &Key,
        shares: u32,
        threshold: u32,
    ) -> Result<(), Error> {
        let mut config = Seal::config(barrier.physical().as_ref())
            .await?
            .ok_or_else(|| Error::invalid("Vault is not initialized"))?;
        let root_key = barrier.root_key()?;
        let sealed_root = seal_bytes(unseal_key, 0, ROOT_KEY_PATH.as_bytes(), root_key.as_bytes())?;
        config.secret_shares = shares;
        config.secret_threshold = threshold;
        let bytes = serde_json::to_vec(&config).map_err(|e| Error::internal(e.to_string()))?;
        barrier
            .physical()
            .transaction(vec![
                ward_storage::TxOp::Put {
                    key: ROOT_KEY_PATH.into(),
                    value: sealed_root,
                },
                ward_storage::TxOp::Put {
                    key: SEAL_CONFIG_PATH.into(),
                    value: bytes,
                },
            ])
            .await?;
        Ok(())
    }

    /// Checks a set of unseal shares against the stored root key without unsealing anything
    /// (used by generate-root and rekey to prove a quorum).
    pub(crate) async fn verify_shares(
        barrier: &Barrier,
        shares: &[Zeroizing<Vec<u8>>],
    ) -> Result<(), Error> {
        let unseal_key = combine(shares)?;
        let sealed_root = barrier
            .physical()
            .get(ROOT_KEY_PATH)
            .await?
            .ok_or_else(|| Error::internal("root key missing"))?;
        let root = open_bytes(&unseal_key, ROOT_KEY_PATH.as_bytes(), &sealed_root)
            .map_err(|_| Error::invalid("the unseal keys are not valid"))?;
        let current = barrier.root_key()?;
        if bool::from(root.as_slice().ct_eq(current.as_bytes())) {
            Ok(())
        } else {
            Err(Error::invalid("the unseal keys are not valid"))
        }
    }

    /// Submits one share. Duplicates are ignored; at the threshold the barrier is opened, or
    /// progress is reset with an error when the shares do not reconstruct the key.
    pub(crate) async fn submit(
        &self,
        barrier: &Barrier,
        config: &SealConfig,
        share: Vec<u8>,
    ) -> Result<Unseal, Error> {
        let share = Zeroizing::new(share);
        let ready = {
            let mut progress = self
                .progress
                .lock()
                .map_err(|_| Error::internal("seal lock poisoned"))?;
            if share.len() != 33 && !(config.secret_shares == 1 && share.len() == 32) {
                return Err(Error::invalid(
                    "'key' must be a valid hex or base64 string of an unseal key share",
                ));
            }
            if progress.nonce.is_empty() {
                progress.nonce = uuid::Uuid::new_v4().to_string();
            }
            if !progress
                .shares
                .iter()
                .any(|s| bool::from(s.as_slice().ct_eq(share.as_slice())))
            {
                progress.shares.push(share);
            }
            if (progress.shares.len() as u32) < config.secret_threshold {
                return Ok(Unseal::Progress);
            }
            std::mem::take(&mut *progress)
        };
        let unseal_key = combine(&ready.shares)?;
        let sealed_root = barrier
            .physical()
            .get(ROOT_KEY_PATH)
            .await?
            .ok_or_else(|| Error::internal("root key missing"))?;
        let root_bytes =
            open_bytes(&unseal_key, ROOT_KEY_PATH.as_bytes(), &sealed_root).map_err(|_| {
                Error::invalid(
                    "Error unsealing: the unseal keys are not valid; progress has been reset",
                )
            })?;
        let root_key =
            Key::from_slice(&root_bytes).ok_or_else(|| Error::internal("root key length"))?;
        barrier.unseal(root_key).await?;
        Ok(Unseal::Unsealed)
    }

    pub(crate) fn reset(&self) {
        if let Ok(mut progress) = self.progress.lock() {
            *progress = Progress::default();
        }
    }

    /// (shares submitted so far, nonce of this attempt)
    pub(crate) fn progress(&self) -> (u32, String) {
        self.progress
            .lock()
            .map(|p| (p.shares.len() as u32, p.nonce.clone()))
            .unwrap_or((0, String::new()))
    }
}

fn validate(shares: u32, threshold: u32) -> Result<(), Error> {
    if shares == 0 || threshold == 0 {
        return Err(Error::invalid(
            "invalid seal configuration: shares and threshold must be at least 1",
        ));
    }
    if shares > 255 {
        return Err(Error::invalid(
            "invalid seal configuration: shares may not be more than 255",
        ));
    }
    if threshold > shares {
        return Err(Error::invalid(
            "invalid seal configuration: threshold may not be greater than the number of shares",
        ));
    }
    if shares > 1 && threshold == 1 {
        return Err(Error::invalid(
            "invalid seal configuration: threshold must be greater than one for multiple shares",
        ));
    }
    Ok(())
}

pub(crate) fn combine(shares: &[Zeroizing<Vec<u8>>]) -> Result<Key, Error> {
    let bytes = if shares.len() == 1 {
        Zeroizing::new(shares[0].to_vec())
    } else {
        let refs: Vec<&[u8]> = shares.iter().map(|s| s.as_slice()).collect();
        shamir::combine(&refs)
            .map_err(|e| Error::invalid(format!("Error unsealing: {e}; progress has been reset")))?
    };
    Key::from_slice(&bytes).ok_or_else(|| {
        Error::invalid("Error unsealing: invalid key length; progress has been reset")
    })
}
