//! Mutual TLS for the cluster: one CA, a certificate per node (and per client), every
//! connection authenticated both ways.
//!
//! For the embedded default the daemon generates a throwaway [`ClusterCa`] in memory;
//! for a real cluster `fdw-engine certs` writes a CA and node certificates as PEM files
//! that [`NodeIdentity::load`] reads.

use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, IsCa, KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};

/// ALPN of fdw's protocol.
pub const ALPN: &[u8] = b"fdw/1";

/// Why a certificate or TLS configuration could not be made or loaded.
#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    /// Certificate generation failed.
    #[error("generating a certificate for {name:?} failed: {source}")]
    Generate {
        /// Subject.
        name: String,
        /// What rcgen said.
        source: rcgen::Error,
    },
    /// rustls refused the configuration.
    #[error("TLS configuration failed: {0}")]
    Config(#[from] rustls::Error),
    /// A PEM file could not be read or parsed.
    #[error("reading {path}: {message}")]
    Pem {
        /// The file.
        path: String,
        /// What went wrong.
        message: String,
    },
    /// Writing certificate files failed.
    #[error("writing {path}: {source}")]
    Write {
        /// The file.
        path: String,
        /// The I/O error.
        source: std::io::Error,
    },
    /// quinn refused the rustls configuration (no TLS 1.3 cipher suite).
    #[error("QUIC needs TLS 1.3: {0}")]
    NoInitialCipherSuite(String),
}

/// A cluster certificate authority.
pub struct ClusterCa {
    issuer: CertifiedIssuer<'static, KeyPair>,
    key_pem: String,
}

impl ClusterCa {
    /// A fresh CA, valid for the life of the process that holds it.
    pub fn generate() -> Result<Self, TlsError> {
        let err = |source| TlsError::Generate {
            name: "fdw cluster CA".into(),
            source,
        };
        let mut params = CertificateParams::new(Vec::<String>::new()).map_err(err)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "fdw cluster CA");
        params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
        params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let key = KeyPair::generate().map_err(err)?;
        let key_pem = key.serialize_pem();
        let issuer = CertifiedIssuer::self_signed(params, key).map_err(err)?;
        Ok(Self { issuer, key_pem })
    }

    /// The CA certificate, which every node and client trusts.
    pub fn cert(&self) -> CertificateDer<'static> {
        self.issuer.der().clone()
    }

    /// A certificate for `name` (a node name such as `node-0`, or a client name), which
    /// is also the TLS server name peers connect to it by.
    pub fn issue(&self, name: &str) -> Result<NodeIdentity, TlsError> {
        let err = |source| TlsError::Generate {
            name: name.into(),
            source,
        };
        let mut params = CertificateParams::new(vec![name.to_owned()]).map_err(err)?;
        params.distinguished_name.push(DnType::CommonName, name);
        let key = KeyPair::generate().map_err(err)?;
        let cert = params.signed_by(&key, &self.issuer).map_err(err)?;
        Ok(NodeIdentity {
            name: name.to_owned(),
            ca: self.cert(),
            cert: cert.der().clone(),
            key: PrivateKeyDer::try_from(key.serialize_der()).map_err(|e| TlsError::Pem {
                path: "<generated key>".into(),
                message: e.to_string(),
            })?,
        })
    }

    /// Writes `ca.pem` and `ca.key` into `dir` (the key only for issuing more later;
    /// keep it off the nodes).
    pub fn save(&self, dir: &Path) -> Result<(), TlsError> {
        write(&dir.join("ca.pem"), &self.issuer.pem())?;
        write(&dir.join("ca.key"), &self.key_pem)
    }
}

/// What a node (or client) presents and trusts.
#[derive(Debug)]
pub struct NodeIdentity {
    /// Its name: the certificate's subject and the server name peers verify.
    pub name: String,
    /// The cluster CA.
    pub ca: CertificateDer<'static>,
    /// Its certificate, issued by the CA.
    pub cert: CertificateDer<'static>,
    /// Its private key.
    pub key: PrivateKeyDer<'static>,
}

impl Clone for NodeIdentity {
    fn clone(&self) -> Self {
        Self {
            name: self.name.clone(),
            ca: self.ca.clone(),
            cert: self.cert.clone(),
            key: self.key.clone_key(),
        }
    }
}

fn write(path: &Path, contents: &str) -> Result<(), TlsError> {
    std::fs::write(path, contents).map_err(|source| TlsError::Write {
        path: path.display().to_string(),
        source,
    })
}

fn pem_error(path: &Path) -> impl Fn(rustls::pki_types::pem::Error) -> TlsError + '_ {
    move |e| TlsError::Pem {
        path: path.display().to_string(),
        message: e.to_string(),
    }
}

impl NodeIdentity {
    /// Writes `<name>.pem` and `<name>.key` into `dir`.
    pub fn save(&self, dir: &Path) -> Result<(), TlsError> {
        write(
            &dir.join(format!("{}.pem", self.name)),
            &pem_encode("CERTIFICATE", &self.cert),
        )?;
        write(
            &dir.join(format!("{}.key", self.name)),
            &pem_encode("PRIVATE KEY", self.key.secret_der()),
        )
    }

    /// Reads `ca.pem`, `<name>.pem` and `<name>.key` from `dir`.
    pub fn load(dir: &Path, name: &str) -> Result<Self, TlsError> {
        let ca_path = dir.join("ca.pem");
        let cert_path = dir.join(format!("{name}.pem"));
        let key_path = dir.join(format!("{name}.key"));
        Ok(Self {
            name: name.to_owned(),
            ca: CertificateDer::from_pem_file(&ca_path).map_err(pem_error(&ca_path))?,
            cert: CertificateDer::from_pem_file(&cert_path).map_err(pem_error(&cert_path))?,
            key: PrivateKeyDer::from_pem_file(&key_path).map_err(pem_error(&key_path))?,
        })
    }

    fn roots(&self) -> Result<rustls::RootCertStore, TlsError> {
        let mut roots = rustls::RootCertStore::empty();
        roots.add(self.ca.clone())?;
        Ok(roots)
    }

    /// rustls server side: present our certificate, require one from the peer.
    pub(crate) fn server_crypto(&self) -> Result<rustls::ServerConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier = rustls::server::WebPkiClientVerifier::builder_with_provider(
            Arc::new(self.roots()?),
            provider.clone(),
        )
        .build()
        .map_err(|e| TlsError::Config(rustls::Error::General(e.to_string())))?;
        let mut config = rustls::ServerConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_client_cert_verifier(verifier)
            .with_single_cert(vec![self.cert.clone()], self.key.clone_key())?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }

    /// rustls client side: trust the cluster CA only, present our certificate.
    pub(crate) fn client_crypto(&self) -> Result<rustls::ClientConfig, TlsError> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = rustls::ClientConfig::builder_with_provider(provider)
            .with_protocol_versions(&[&rustls::version::TLS13])?
            .with_root_certificates(self.roots()?)
            .with_client_auth_cert(vec![self.cert.clone()], self.key.clone_key())?;
        config.alpn_protocols = vec![ALPN.to_vec()];
        Ok(config)
    }
}

fn pem_encode(label: &str, der: &[u8]) -> String {
    pem::encode(&pem::Pem::new(label, der))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn identities_survive_a_round_trip_through_pem_files() {
        let ca = ClusterCa::generate().unwrap();
        let node = ca.issue("node-0").unwrap();
        let dir = std::env::temp_dir().join(format!("fdw-tls-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        ca.save(&dir).unwrap();
        node.save(&dir).unwrap();
        let loaded = NodeIdentity::load(&dir, "node-0").unwrap();
        assert_eq!(
            (loaded.ca, loaded.cert),
            (node.ca.clone(), node.cert.clone())
        );
        assert_eq!(loaded.key.secret_der(), node.key.secret_der());
        let err = NodeIdentity::load(&dir, "node-9").unwrap_err();
        assert!(err.to_string().contains("node-9.pem"), "{err}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
