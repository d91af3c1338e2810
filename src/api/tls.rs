//! TLS settings for an `https://` server. Verification is always on: the
//! server's certificate must chain to the system's roots (through
//! rustls-platform-verifier) or, when `ca_cert_path` is set, to those CAs.

use std::path::Path;

use ureq::tls::{parse_pem, Certificate, ClientCert, PemItem, PrivateKey, RootCerts, TlsConfig};

use super::auth::read_protected;
use super::config::ApiConfig;

/// Builds the TLS configuration from the files `config` names.
pub fn tls_config(config: &ApiConfig) -> Result<TlsConfig, String> {
    let roots = match &config.ca_cert_path {
        Some(path) => RootCerts::new_with_certs(&certificates(path, "CA certificate file")?),
        None => RootCerts::PlatformVerifier,
    };
    let client_cert = match (&config.client_cert_path, &config.client_key_path) {
        (Some(cert), Some(key)) => Some(ClientCert::new_with_certs(
            &certificates(cert, "client certificate file")?,
            private_key(key)?,
        )),
        _ => None,
    };
    Ok(TlsConfig::builder()
        .root_certs(roots)
        .client_cert(client_cert)
        .build())
}

/// Every certificate in a PEM file (at least one).
fn certificates(path: &Path, what: &str) -> Result<Vec<Certificate<'static>>, String> {
    let pem = read_protected(path, what)?;
    let mut certs = Vec::new();
    for item in parse_pem(&pem) {
        match item {
            Ok(PemItem::Certificate(cert)) => certs.push(cert),
            Ok(_) => {}
            Err(e) => return Err(format!("{what} {}: {e}", path.display())),
        }
    }
    if certs.is_empty() {
        return Err(format!(
            "{what} {}: no PEM certificate in it",
            path.display()
        ));
    }
    Ok(certs)
}

fn private_key(path: &Path) -> Result<PrivateKey<'static>, String> {
    let pem = read_protected(path, "client key file")?;
    PrivateKey::from_pem(&pem).map_err(|_| {
        format!(
            "client key file {}: no PEM private key in it",
            path.display()
        )
    })
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::os::unix::fs::PermissionsExt;
    use std::path::PathBuf;

    use super::super::auth::testing::fixture;
    use super::*;

    fn with_files(ca: Option<PathBuf>, cert: Option<PathBuf>, key: Option<PathBuf>) -> ApiConfig {
        ApiConfig {
            ca_cert_path: ca,
            client_cert_path: cert,
            client_key_path: key,
            ..ApiConfig::default()
        }
    }

    #[test]
    fn system_roots_unless_a_ca_is_configured_and_never_unverified() {
        let system = tls_config(&ApiConfig::default()).unwrap();
        assert!(matches!(system.root_certs(), RootCerts::PlatformVerifier));
        assert!(!system.disable_verification());
        let own = tls_config(&with_files(Some(fixture("client.pem")), None, None)).unwrap();
        assert!(matches!(own.root_certs(), RootCerts::Specific(c) if c.len() == 1));
        assert!(!own.disable_verification());
        assert!(own.client_cert().is_none());
    }

    #[test]
    fn client_certificate_and_key_load() {
        let c = with_files(
            None,
            Some(fixture("client.pem")),
            Some(fixture("client.key")),
        );
        let tls = tls_config(&c).unwrap();
        assert_eq!(tls.client_cert().unwrap().certs().len(), 1);
    }

    #[test]
    fn wrong_files_give_clear_errors() {
        let no_cert = tls_config(&with_files(Some(fixture("client.key")), None, None));
        assert!(no_cert.unwrap_err().contains("no PEM certificate"));
        let no_key = with_files(
            None,
            Some(fixture("client.pem")),
            Some(fixture("client.pem")),
        );
        assert!(tls_config(&no_key)
            .unwrap_err()
            .contains("no PEM private key"));

        let dir = std::env::temp_dir().join(format!("gthulhu-api-tls-{}", std::process::id()));
        fs::create_dir_all(&dir).unwrap();
        let key = dir.join("client.key");
        fs::copy(fixture("client.key"), &key).unwrap();
        fs::set_permissions(&key, fs::Permissions::from_mode(0o666)).unwrap();
        let open = with_files(None, Some(fixture("client.pem")), Some(key));
        let err = tls_config(&open).unwrap_err();
        assert!(err.contains("world-writable"), "{err}");
        fs::remove_dir_all(&dir).unwrap();
    }
}
