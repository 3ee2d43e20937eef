//! Operator workflows that need a quorum of unseal key shares: generating a new root token
//! (`sys/generate-root/*`) and rekeying (`sys/rekey/*`: new shares and threshold).
//!
//! Both are one attempt at a time, identified by a nonce the key holders quote with each
//! share. An attempt expires after an hour, so an abandoned one cannot hold the slot for ever,
//! and an attempt in progress cannot be replaced: it must be cancelled first, and cancelling
//! needs its nonce (Vault lets anyone cancel; the security matrix's CVE-2026-5807 class).
//! The root token of generate-root is returned only XORed with a one-time pad the operator
//! chose (or received at the start), so the key holders who submit shares never see it.

use std::sync::Mutex;

use base64::Engine as _;
use subtle::ConstantTimeEq;
use zeroize::Zeroizing;

use crate::core::Core;
use crate::error::Error;
use crate::seal::{combine, Seal};
use crate::token::{random_base62, TokenEntry};

/// How long an attempt may sit unfinished.
const ATTEMPT_LIFETIME: i64 = 3600;
/// The length of a root token id (`wrs.` and 32 characters), and so of the one-time pad.
pub const OTP_LENGTH: usize = 36;

#[derive(Default)]
pub(crate) struct Operator {
    root: Mutex<Option<RootAttempt>>,
    rekey: Mutex<Option<RekeyAttempt>>,
}

struct RootAttempt {
    nonce: String,
    otp: Zeroizing<String>,
    shares: Vec<Zeroizing<Vec<u8>>>,
    started_at: i64,
}

struct RekeyAttempt {
    nonce: String,
    new_shares: u32,
    new_threshold: u32,
    require_verification: bool,
    shares: Vec<Zeroizing<Vec<u8>>>,
    started_at: i64,
    /// After the quorum: the new key, waiting for its holders to prove they have their shares.
    pending: Option<PendingRekey>,
}

struct PendingRekey {
    key: crate::barrier::Key,
    verification_nonce: String,
    shares: Vec<Zeroizing<Vec<u8>>>,
}

/// `sys/generate-root/attempt` and `update` answers.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct GenerateRootStatus {
    pub started: bool,
    pub nonce: String,
    pub progress: u32,
    pub required: u32,
    pub complete: bool,
    pub encoded_token: String,
    /// Only in the answer to a start that generated the pad.
    pub otp: String,
    pub otp_length: usize,
}

/// `sys/rekey/*` answers. `keys` is filled only once, in the answer completing the quorum.
#[derive(Clone, Default)]
pub struct RekeyStatus {
    pub started: bool,
    pub nonce: String,
    pub new_shares: u32,
    pub new_threshold: u32,
    pub progress: u32,
    pub required: u32,
    pub complete: bool,
    pub keys: Vec<Zeroizing<Vec<u8>>>,
    pub verification_required: bool,
    pub verification_nonce: String,
    pub verification_progress: u32,
}

impl std::fmt::Debug for RekeyStatus {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RekeyStatus")
            .field("started", &self.started)
            .field("progress", &self.progress)
            .field("complete", &self.complete)
            .field("keys", &format!("{} keys ***", self.keys.len()))
            .finish_non_exhaustive()
    }
}

fn lock<T>(m: &Mutex<T>) -> Result<std::sync::MutexGuard<'_, T>, Error> {
    m.lock()
        .map_err(|_| Error::internal("operator lock poisoned"))
}

fn add_share(shares: &mut Vec<Zeroizing<Vec<u8>>>, share: Vec<u8>) {
    let share = Zeroizing::new(share);
    if !shares
        .iter()
        .any(|s| bool::from(s.as_slice().ct_eq(share.as_slice())))
    {
        shares.push(share);
    }
}

fn check_nonce(expected: &str, given: &str) -> Result<(), Error> {
    if given.is_empty() {
        return Err(Error::invalid("missing nonce"));
    }
    if expected != given {
        return Err(Error::invalid(format!(
            "nonce mismatch: the attempt in progress has nonce {expected}"
        )));
    }
    Ok(())
}

impl Core {
    async fn threshold(&self) -> Result<u32, Error> {
        self.state()?;
        Ok(Seal::config(self.barrier.physical().as_ref())
            .await?
            .ok_or_else(|| Error::invalid("Vault is not initialized"))?
            .secret_threshold)
    }

    pub async fn generate_root_status(&self) -> Result<GenerateRootStatus, Error> {
        let required = self.threshold().await?;
        let now = self.clock.unix();
        let mut slot = lock(&self.operator.root)?;
        if slot
            .as_ref()
            .is_some_and(|a| now - a.started_at > ATTEMPT_LIFETIME)
        {
            *slot = None;
        }
        Ok(match slot.as_ref() {
            None => GenerateRootStatus {
                required,
                otp_length: OTP_LENGTH,
                ..GenerateRootStatus::default()
            },
            Some(a) => GenerateRootStatus {
                started: true,
                nonce: a.nonce.clone(),
                progress: a.shares.len() as u32,
                required,
                otp_length: OTP_LENGTH,
                ..GenerateRootStatus::default()
            },
        })
    }

    /// Starts an attempt. Without `otp`, one is generated and returned (once).
    pub async fn generate_root_start(
        &self,
        otp: Option<String>,
    ) -> Result<GenerateRootStatus, Error> {
        let status = self.generate_root_status().await?;
        if status.started {
            return Err(Error::invalid(
                "root generation already in progress; cancel it first with its nonce",
            ));
        }
        let generated = otp.is_none();
        let otp = otp.unwrap_or_else(|| random_base62(OTP_LENGTH));
        if otp.len() != OTP_LENGTH || !otp.chars().all(|c| c.is_ascii_alphanumeric()) {
            return Err(Error::invalid(format!(
                "OTP must be {OTP_LENGTH} base62 characters"
            )));
        }
        let nonce = uuid::Uuid::new_v4().to_string();
        *lock(&self.operator.root)? = Some(RootAttempt {
            nonce: nonce.clone(),
            otp: Zeroizing::new(otp.clone()),
            shares: Vec::new(),
            started_at: self.clock.unix(),
        });
        tracing::warn!(nonce = %nonce, "root token generation started");
        Ok(GenerateRootStatus {
            started: true,
            nonce,
            required: status.required,
            otp: if generated { otp } else { String::new() },
            otp_length: OTP_LENGTH,
            ..GenerateRootStatus::default()
        })
    }

    pub async fn generate_root_cancel(&self, nonce: &str) -> Result<(), Error> {
        let mut slot = lock(&self.operator.root)?;
        if let Some(attempt) = slot.as_ref() {
            check_nonce(&attempt.nonce, nonce)?;
            *slot = None;
            tracing::warn!("root token generation cancelled");
        }
        Ok(())
    }

    /// Submits one unseal share. At the threshold the shares are checked against the root key;
    /// a new root token is created and returned encoded with the pad.
    pub async fn generate_root_update(
        &self,
        share: Vec<u8>,
        nonce: &str,
    ) -> Result<GenerateRootStatus, Error> {
        let required = self.threshold().await?;
        let (shares, otp) = {
            let mut slot = lock(&self.operator.root)?;
            let attempt = slot
                .as_mut()
                .ok_or_else(|| Error::invalid("no root generation in progress"))?;
            check_nonce(&attempt.nonce, nonce)?;
            add_share(&mut attempt.shares, share);
            if (attempt.shares.len() as u32) < required {
                return Ok(GenerateRootStatus {
                    started: true,
                    nonce: attempt.nonce.clone(),
                    progress: attempt.shares.len() as u32,
                    required,
                    otp_length: OTP_LENGTH,
                    ..GenerateRootStatus::default()
                });
            }
            let taken = slot
                .take()
                .ok_or_else(|| Error::internal("attempt vanished"))?;
            (taken.shares, taken.otp)
        };
        Seal::verify_shares(&self.barrier, &shares).await?;
        let state = self.state()?;
        let entry = TokenEntry {
            policies: vec!["root".into()],
            display_name: "root".into(),
            creation_time: self.clock.unix(),
            path: "auth/token/root".into(),
            orphan: true,
            ..TokenEntry::default()
        };
        let minted = state.tokens.create(entry, None).await?;
        let encoded: Vec<u8> = minted
            .id
            .bytes()
            .zip(otp.bytes())
            .map(|(t, o)| t ^ o)
            .collect();
        tracing::warn!("a new root token was generated with a quorum of unseal keys");
        Ok(GenerateRootStatus {
            started: true,
            nonce: nonce.to_string(),
            progress: required,
            required,
            complete: true,
            encoded_token: base64::engine::general_purpose::STANDARD.encode(encoded),
            otp_length: OTP_LENGTH,
            ..GenerateRootStatus::default()
        })
    }

    pub async fn rekey_status(&self) -> Result<RekeyStatus, Error> {
        let required = self.threshold().await?;
        let now = self.clock.unix();
        let mut slot = lock(&self.operator.rekey)?;
        if slot
            .as_ref()
            .is_some_and(|a| now - a.started_at > ATTEMPT_LIFETIME)
        {
            *slot = None;
        }
        Ok(match slot.as_ref() {
            None => RekeyStatus {
                required,
                ..RekeyStatus::default()
            },
            Some(a) => RekeyStatus {
                started: true,
                nonce: a.nonce.clone(),
                new_shares: a.new_shares,
                new_threshold: a.new_threshold,
                progress: a.shares.len() as u32,
                required,
                verification_required: a.require_verification,
                verification_nonce: a
                    .pending
                    .as_ref()
                    .map(|p| p.verification_nonce.clone())
                    .unwrap_or_default(),
                verification_progress: a
                    .pending
                    .as_ref()
                    .map(|p| p.shares.len() as u32)
                    .unwrap_or(0),
                ..RekeyStatus::default()
            },
        })
    }

    pub async fn rekey_start(
        &self,
        shares: u32,
        threshold: u32,
        require_verification: bool,
    ) -> Result<RekeyStatus, Error> {
        let status = self.rekey_status().await?;
        if status.started {
            return Err(Error::invalid(
                "rekey already in progress; cancel it first with its nonce",
            ));
        }
        // Validates the new configuration before anyone submits a share.
        Seal::new_unseal_key(shares, threshold)?;
        *lock(&self.operator.rekey)? = Some(RekeyAttempt {
            nonce: uuid::Uuid::new_v4().to_string(),
            new_shares: shares,
            new_threshold: threshold,
            require_verification,
            shares: Vec::new(),
            started_at: self.clock.unix(),
            pending: None,
        });
        tracing::warn!(shares, threshold, "rekey started");
        self.rekey_status().await
    }

    pub async fn rekey_cancel(&self, nonce: &str) -> Result<(), Error> {
        let mut slot = lock(&self.operator.rekey)?;
        if let Some(attempt) = slot.as_ref() {
            check_nonce(&attempt.nonce, nonce)?;
            *slot = None;
            tracing::warn!("rekey cancelled");
        }
        Ok(())
    }

    /// Submits one current share. At the threshold the new shares are returned, and applied at
    /// once unless verification was asked for.
    pub async fn rekey_update(&self, share: Vec<u8>, nonce: &str) -> Result<RekeyStatus, Error> {
        let required = self.threshold().await?;
        let attempt = {
            let mut slot = lock(&self.operator.rekey)?;
            let attempt = slot
                .as_mut()
                .ok_or_else(|| Error::invalid("no rekey in progress"))?;
            check_nonce(&attempt.nonce, nonce)?;
            if attempt.pending.is_some() {
                return Err(Error::invalid(
                    "the new keys are waiting for verification at sys/rekey/verify",
                ));
            }
            add_share(&mut attempt.shares, share);
            if (attempt.shares.len() as u32) < required {
                return Ok(RekeyStatus {
                    started: true,
                    nonce: attempt.nonce.clone(),
                    new_shares: attempt.new_shares,
                    new_threshold: attempt.new_threshold,
                    progress: attempt.shares.len() as u32,
                    required,
                    verification_required: attempt.require_verification,
                    ..RekeyStatus::default()
                });
            }
            slot.take()
                .ok_or_else(|| Error::internal("attempt vanished"))?
        };
        if let Err(e) = Seal::verify_shares(&self.barrier, &attempt.shares).await {
            return Err(Error::invalid(format!(
                "{e}; the rekey attempt has been cancelled"
            )));
        }
        let (key, keys) = Seal::new_unseal_key(attempt.new_shares, attempt.new_threshold)?;
        let mut status = RekeyStatus {
            started: true,
            nonce: attempt.nonce.clone(),
            new_shares: attempt.new_shares,
            new_threshold: attempt.new_threshold,
            progress: required,
            required,
            complete: true,
            keys,
            verification_required: attempt.require_verification,
            ..RekeyStatus::default()
        };
        if attempt.require_verification {
            let verification_nonce = uuid::Uuid::new_v4().to_string();
            status.verification_nonce = verification_nonce.clone();
            *lock(&self.operator.rekey)? = Some(RekeyAttempt {
                shares: Vec::new(),
                pending: Some(PendingRekey {
                    key,
                    verification_nonce,
                    shares: Vec::new(),
                }),
                ..attempt
            });
        } else {
            Seal::commit_rekey(
                &self.barrier,
                &key,
                attempt.new_shares,
                attempt.new_threshold,
            )
            .await?;
            tracing::warn!("rekey complete: the old key shares no longer unseal");
        }
        Ok(status)
    }

    /// Submits one of the *new* shares; at the new threshold the rekey is applied.
    pub async fn rekey_verify(&self, share: Vec<u8>, nonce: &str) -> Result<RekeyStatus, Error> {
        let (key, shares, new_shares, new_threshold) = {
            let mut slot = lock(&self.operator.rekey)?;
            let attempt = slot
                .as_mut()
                .ok_or_else(|| Error::invalid("no rekey in progress"))?;
            let pending = attempt
                .pending
                .as_mut()
                .ok_or_else(|| Error::invalid("no rekey verification in progress"))?;
            check_nonce(&pending.verification_nonce, nonce)?;
            add_share(&mut pending.shares, share);
            if (pending.shares.len() as u32) < attempt.new_threshold {
                let progress = pending.shares.len() as u32;
                return Ok(RekeyStatus {
                    started: true,
                    nonce: pending.verification_nonce.clone(),
                    new_shares: attempt.new_shares,
                    new_threshold: attempt.new_threshold,
                    verification_required: true,
                    verification_nonce: pending.verification_nonce.clone(),
                    verification_progress: progress,
                    ..RekeyStatus::default()
                });
            }
            let taken = slot
                .take()
                .ok_or_else(|| Error::internal("attempt vanished"))?;
            let pending = taken
                .pending
                .ok_or_else(|| Error::internal("pending rekey vanished"))?;
            (
                pending.key,
                pending.shares,
                taken.new_shares,
                taken.new_threshold,
            )
        };
        let combined = combine(&shares)?;
        if !bool::from(combined.as_bytes().ct_eq(key.as_bytes())) {
            return Err(Error::invalid(
                "the new key shares do not match; the rekey attempt has been cancelled",
            ));
        }
        Seal::commit_rekey(&self.barrier, &key, new_shares, new_threshold).await?;
        tracing::warn!("rekey verified and complete: the old key shares no longer unseal");
        Ok(RekeyStatus {
            complete: true,
            new_shares,
            new_threshold,
            verification_required: true,
            ..RekeyStatus::default()
        })
    }
}

/// Decodes a generate-root `encoded_token` with its pad (for `ward operator generate-root -decode`).
pub fn decode_root_token(encoded: &str, otp: &str) -> Result<String, Error> {
    let bytes = base64::engine::general_purpose::STANDARD
        .decode(encoded.trim())
        .map_err(|_| Error::invalid("encoded token is not base64"))?;
    if bytes.len() != otp.len() {
        return Err(Error::invalid(
            "the OTP does not match the encoded token's length",
        ));
    }
    let token: Vec<u8> = bytes.iter().zip(otp.bytes()).map(|(b, o)| b ^ o).collect();
    String::from_utf8(token).map_err(|_| Error::invalid("decoding failed: wrong OTP?"))
}
