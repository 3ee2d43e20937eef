//! Shamir's secret sharing over GF(2^8), in constant time.
//!
//! The unseal key is split into `n` shares of which any `k` reconstruct it and `k - 1` reveal
//! nothing. Field arithmetic uses no lookup tables and no secret-dependent branches (table
//! lookups leak through cache timing, CVE-2023-25000), and polynomial coefficients are drawn
//! uniformly from the whole field (drawing from [1, 255] leaks, RUSTSEC-2024-0398).
//! A share is the y-values followed by its x-coordinate byte, as Vault lays them out.

use rand::RngCore;
use zeroize::Zeroizing;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShamirError {
    InvalidParameters(&'static str),
    /// Shares of different lengths, duplicates, or too few.
    InvalidShares(&'static str),
}

impl std::fmt::Display for ShamirError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ShamirError::InvalidParameters(m) | ShamirError::InvalidShares(m) => f.write_str(m),
        }
    }
}

/// Splits `secret` into `shares` shares with reconstruction threshold `threshold`.
pub fn split(
    secret: &[u8],
    shares: u8,
    threshold: u8,
) -> Result<Vec<Zeroizing<Vec<u8>>>, ShamirError> {
    if secret.is_empty() {
        return Err(ShamirError::InvalidParameters(
            "cannot split an empty secret",
        ));
    }
    if threshold < 2 || shares < threshold {
        return Err(ShamirError::InvalidParameters(
            "threshold must be at least 2 and at most the number of shares",
        ));
    }
    let mut rng = rand::rngs::OsRng;
    let mut out: Vec<Zeroizing<Vec<u8>>> = (1..=shares)
        .map(|x| {
            let mut share = Zeroizing::new(vec![0u8; secret.len() + 1]);
            share[secret.len()] = x;
            share
        })
        .collect();
    let mut coefficients = Zeroizing::new(vec![0u8; threshold as usize]);
    for (i, byte) in secret.iter().enumerate() {
        coefficients[0] = *byte;
        rng.fill_bytes(&mut coefficients[1..]);
        for share in out.iter_mut() {
            let x = share[secret.len()];
            share[i] = evaluate(&coefficients, x);
        }
    }
    Ok(out)
}

/// Reconstructs the secret from at least `threshold` distinct shares. With fewer shares the
/// result is a wrong secret, not an error: the caller verifies it (by decrypting the root key).
pub fn combine(shares: &[&[u8]]) -> Result<Zeroizing<Vec<u8>>, ShamirError> {
    if shares.len() < 2 {
        return Err(ShamirError::InvalidShares("at least two shares are needed"));
    }
    let len = shares[0].len();
    if len < 2 || shares.iter().any(|s| s.len() != len) {
        return Err(ShamirError::InvalidShares(
            "shares must all have the same length",
        ));
    }
    let xs: Vec<u8> = shares.iter().map(|s| s[len - 1]).collect();
    for (i, x) in xs.iter().enumerate() {
        if *x == 0 || xs[..i].contains(x) {
            return Err(ShamirError::InvalidShares("duplicate or invalid share"));
        }
    }
    let mut secret = Zeroizing::new(vec![0u8; len - 1]);
    for (i, xi) in xs.iter().enumerate() {
        // Lagrange basis polynomial for share i, evaluated at 0.
        let mut basis = 1u8;
        for (j, xj) in xs.iter().enumerate() {
            if i != j {
                basis = mul(basis, mul(*xj, inverse(xi ^ xj)));
            }
        }
        for (k, out) in secret.iter_mut().enumerate() {
            *out ^= mul(shares[i][k], basis);
        }
    }
    Ok(secret)
}

/// Horner evaluation of the polynomial at `x`.
fn evaluate(coefficients: &[u8], x: u8) -> u8 {
    coefficients
        .iter()
        .rev()
        .fold(0u8, |acc, c| mul(acc, x) ^ c)
}

/// Multiplication in GF(2^8) with the AES polynomial, without branches or tables.
fn mul(mut a: u8, mut b: u8) -> u8 {
    let mut product = 0u8;
    for _ in 0..8 {
        product ^= a & 0u8.wrapping_sub(b & 1);
        let carry = 0u8.wrapping_sub(a >> 7);
        a = (a << 1) ^ (0x1b & carry);
        b >>= 1;
    }
    product
}

/// a^254 = a^-1 (and 0 for 0), by a fixed square-and-multiply chain.
fn inverse(a: u8) -> u8 {
    let mut result = 1u8;
    let mut base = a;
    let mut exponent = 254u8;
    for _ in 0..8 {
        let take = 0u8.wrapping_sub(exponent & 1);
        let multiplied = mul(result, base);
        result = (multiplied & take) | (result & !take);
        base = mul(base, base);
        exponent >>= 1;
    }
    result
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn field_inverse() {
        for a in 1..=255u8 {
            assert_eq!(mul(a, inverse(a)), 1, "a = {a}");
        }
    }

    #[test]
    fn every_k_subset_reconstructs_and_fewer_do_not() {
        let secret: Vec<u8> = (0..32).map(|i| i * 7 + 3).collect();
        let shares = split(&secret, 5, 3).expect("split");
        for a in 0..5 {
            for b in (a + 1)..5 {
                let two = [shares[a].as_slice(), shares[b].as_slice()];
                assert_ne!(
                    combine(&two).expect("combine").as_slice(),
                    secret.as_slice()
                );
                for c in (b + 1)..5 {
                    let three = [
                        shares[a].as_slice(),
                        shares[b].as_slice(),
                        shares[c].as_slice(),
                    ];
                    assert_eq!(
                        combine(&three).expect("combine").as_slice(),
                        secret.as_slice()
                    );
                }
            }
        }
        let dup = [
            shares[0].as_slice(),
            shares[0].as_slice(),
            shares[1].as_slice(),
        ];
        assert!(combine(&dup).is_err());
        assert!(split(&secret, 2, 3).is_err());
        assert!(split(&secret, 3, 1).is_err());
    }

    #[test]
    fn coefficients_are_uniform() {
        // With threshold 2, a share's y for a zero secret byte is the random coefficient times x;
        // for x = 1 it is the coefficient itself. Chi-squared over 256 buckets.
        let secret = vec![0u8; 4096];
        let shares = split(&secret, 2, 2).expect("split");
        let mut counts = [0f64; 256];
        for y in &shares[0][..4096] {
            counts[*y as usize] += 1.0;
        }
        let expected = 4096.0 / 256.0;
        let chi: f64 = counts
            .iter()
            .map(|c| (c - expected).powi(2) / expected)
            .sum();
        // 255 degrees of freedom: p = 0.0001 at about 339.
        assert!(chi < 339.0, "chi-squared {chi}");
        assert!(counts[0] > 0.0, "zero must be a possible coefficient");
    }
}
