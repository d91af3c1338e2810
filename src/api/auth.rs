//! Key files and the server's JWT.
//!
//! The client proves itself by sending its RSA public key; the server
//! answers with an RS256 JWT signed by the matching private key, which the
//! client verifies with the same public key before using it. Neither the
//! token nor any key material is ever logged: [`Token`] and [`PublicKey`]
//! have no `Debug` or `Display`.

use std::fs::File;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

/// Largest key or certificate file read.
const MAX_KEY_FILE_BYTES: u64 = 64 << 10;

/// Reads a key or certificate file, refusing one that anybody may
/// overwrite (a planted key would let a stranger impersonate the server or
/// this node).
pub fn read_protected(path: &Path, what: &str) -> Result<Vec<u8>, String> {
    let shown = path.display();
    let metadata = std::fs::metadata(path).map_err(|e| format!("{what} {shown}: {e}"))?;
    if !metadata.is_file() {
        return Err(format!("{what} {shown}: not a regular file"));
    }
    if metadata.permissions().mode() & 0o002 != 0 {
        return Err(format!(
            "{what} {shown}: is world-writable; refusing it (chmod o-w)"
        ));
    }
    let mut bytes = Vec::new();
    File::open(path)
        .and_then(|f| f.take(MAX_KEY_FILE_BYTES + 1).read_to_end(&mut bytes))
        .map_err(|e| format!("{what} {shown}: {e}"))?;
    if bytes.len() as u64 > MAX_KEY_FILE_BYTES {
        return Err(format!(
            "{what} {shown}: larger than {MAX_KEY_FILE_BYTES} bytes"
        ));
    }
    Ok(bytes)
}

/// The RSA public key the client authenticates with.
pub struct PublicKey {
    pem: String,
    decoding: DecodingKey,
}

impl PublicKey {
    pub fn load(path: &Path) -> Result<PublicKey, String> {
        let bytes = read_protected(path, "public key")?;
        let bad = || format!("public key {}: not a PEM RSA public key", path.display());
        let decoding = DecodingKey::from_rsa_pem(&bytes).map_err(|_| bad())?;
        let pem = String::from_utf8(bytes).map_err(|_| bad())?;
        Ok(PublicKey { pem, decoding })
    }

    /// The key as sent to the server.
    pub fn pem(&self) -> &str {
        &self.pem
    }
}

/// A verified token and when it expires.
pub struct Token {
    value: String,
    /// Seconds since the epoch (the `exp` claim).
    expires_at: u64,
}

#[derive(Deserialize)]
struct Claims {
    exp: u64,
}

impl Token {
    /// Checks the token's RS256 signature with `key`, and its `exp` (and
    /// `nbf`, if present).
    pub fn verify(value: String, key: &PublicKey) -> Result<Token, String> {
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_nbf = true;
        // The server names no audience the client could check.
        validation.validate_aud = false;
        let data =
            jsonwebtoken::decode::<Claims>(&value, &key.decoding, &validation).map_err(|e| {
                let why = match e.kind() {
                    ErrorKind::InvalidSignature => "its signature does not match the public key",
                    ErrorKind::ExpiredSignature => "it has expired",
                    ErrorKind::ImmatureSignature => "it is not valid yet (nbf)",
                    ErrorKind::InvalidAlgorithm => "it is not signed with RS256",
                    ErrorKind::MissingRequiredClaim(_) => "it has no exp claim",
                    _ => "it is malformed",
                };
                format!("token refused: {why}")
            })?;
        Ok(Token {
            value,
            expires_at: data.claims.exp,
        })
    }

    pub fn value(&self) -> &str {
        &self.value
    }

    /// Whether the token should be renewed now: it expires within
    /// `margin_s` seconds.
    pub fn expires_within(&self, margin_s: u64) -> bool {
        now_s().saturating_add(margin_s) >= self.expires_at
    }
}

fn now_s() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
pub mod testing {
    //! Test keys (tests/fixtures/api, made with openssl for tests only)
    //! and tokens signed with them.

    use std::path::PathBuf;

    use jsonwebtoken::{encode, Algorithm, EncodingKey, Header};

    use super::now_s;

    pub fn fixture(name: &str) -> PathBuf {
        PathBuf::from(env!("CARGO_MANIFEST_DIR"))
            .join("tests/fixtures/api")
            .join(name)
    }

    /// A token for the server key pair (or `other_key`), expiring
    /// `exp_in_s` seconds from now (negative: in the past).
    pub fn token(exp_in_s: i64, other_key: bool) -> String {
        let file = if other_key {
            "other_private.pem"
        } else {
            "server_private.pem"
        };
        let pem = std::fs::read(fixture(file)).expect("test key");
        let key = EncodingKey::from_rsa_pem(&pem).expect("RSA private key");
        let now = now_s() as i64;
        let claims = serde_json::json!({
            "client_id": "gthulhu-test",
            "iss": "decision-maker-service",
            "sub": "gthulhu-test",
            "iat": now,
            "nbf": now,
            "exp": now + exp_in_s,
        });
        encode(&Header::new(Algorithm::RS256), &claims, &key).expect("signing")
    }
}

#[cfg(test)]
mod tests {
    use std::fs;

    use super::testing::{fixture, token};
    use super::*;

    fn key() -> PublicKey {
        PublicKey::load(&fixture("server_public.pem")).unwrap()
    }

    #[test]
    fn good_token_verifies_and_knows_its_expiry() {
        let t = Token::verify(token(3600, false), &key()).unwrap();
        assert!(!t.expires_within(60));
        assert!(t.expires_within(7200));
    }

    #[test]
    fn expired_forged_and_malformed_tokens_are_refused() {
        let k = key();
        let expired = Token::verify(token(-3600, false), &k).err().unwrap();
        assert!(expired.contains("expired"), "{expired}");
        let forged = Token::verify(token(3600, true), &k).err().unwrap();
        assert!(forged.contains("signature"), "{forged}");
        let junk = Token::verify("a.b.c".to_string(), &k).err().unwrap();
        assert!(junk.contains("malformed"), "{junk}");
    }

    #[test]
    fn key_files_must_not_be_world_writable() {
        let dir = std::env::temp_dir().join(format!("gthulhu-api-auth-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let path = dir.join("public.pem");
        fs::copy(fixture("server_public.pem"), &path).unwrap();
        fs::set_permissions(&path, fs::Permissions::from_mode(0o646)).unwrap();
        let err = PublicKey::load(&path).err().unwrap();
        assert!(err.contains("world-writable"), "{err}");
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        assert!(PublicKey::load(&path).is_ok());
        fs::remove_dir_all(&dir).unwrap();
    }

    #[test]
    fn a_private_key_or_junk_is_not_a_public_key() {
        let err = PublicKey::load(&fixture("README.md")).err().unwrap();
        assert!(err.contains("not a PEM RSA public key"), "{err}");
        let missing = PublicKey::load(Path::new("/nonexistent/key.pem"))
            .err()
            .unwrap();
        assert!(missing.contains("/nonexistent/key.pem"), "{missing}");
    }
}
