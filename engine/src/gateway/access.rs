//! Who may use the gateway, and which bucket a request's host names.

use std::collections::HashMap;

use s3s::access::{S3Access, S3AccessContext};
use s3s::auth::{S3Auth, SecretKey};
use s3s::host::{S3Host, VirtualHost};
use s3s::{S3Result, s3_error};

use super::GatewayError;

/// An access key and its secret, from the config.
#[derive(Clone, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AccessKey {
    /// The access key id clients sign with.
    pub access_key: String,
    /// Its secret.
    pub secret_key: String,
}

impl std::fmt::Debug for AccessKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secret, not even in a debug log.
        f.debug_struct("AccessKey")
            .field("access_key", &self.access_key)
            .finish_non_exhaustive()
    }
}

/// The configured keys. An unknown key is `InvalidAccessKeyId`, as S3 answers; s3s
/// answers a wrong secret with `SignatureDoesNotMatch`.
pub(super) struct Keys(HashMap<String, SecretKey>);

impl Keys {
    pub(super) fn new(keys: &[AccessKey]) -> Self {
        Self(
            keys.iter()
                .map(|k| (k.access_key.clone(), SecretKey::from(k.secret_key.as_str())))
                .collect(),
        )
    }
}

#[async_trait::async_trait]
impl S3Auth for Keys {
    async fn get_secret_key(&self, access_key: &str) -> S3Result<SecretKey> {
        self.0.get(access_key).cloned().ok_or_else(|| {
            s3_error!(
                InvalidAccessKeyId,
                "The AWS Access Key Id you provided does not exist in our records."
            )
        })
    }
}

/// Serves unsigned requests too (signed ones are still checked by [`Keys`]).
pub(super) struct AllowAnonymous;

#[async_trait::async_trait]
impl S3Access for AllowAnonymous {
    async fn check(&self, _cx: &mut S3AccessContext<'_>) -> S3Result<()> {
        Ok(())
    }
}

/// Virtual-hosted-style addressing under the configured base domains; path-style for
/// every other host (an IP address, `localhost`, a load balancer's name). s3s's own
/// domain parsers take any unknown host for a bucket name, which would make
/// `127.0.0.1:9000` a bucket.
pub(super) struct Domains(Vec<String>);

impl Domains {
    pub(super) fn new(domains: &[String]) -> Result<Self, GatewayError> {
        let mut out = Vec::new();
        for domain in domains {
            let domain = domain.trim_end_matches('.').to_ascii_lowercase();
            let valid = !domain.is_empty()
                && domain.split('.').all(|label| {
                    !label.is_empty()
                        && label
                            .bytes()
                            .all(|b| b.is_ascii_alphanumeric() || b == b'-')
                });
            if !valid {
                return Err(GatewayError::Invalid(format!(
                    "domains: {domain:?} is not a domain name (no port, no scheme)"
                )));
            }
            out.push(domain);
        }
        Ok(Self(out))
    }
}

impl S3Host for Domains {
    fn parse_host_header<'a>(&'a self, host: &'a str) -> S3Result<VirtualHost<'a>> {
        // The port does not name anything; IPv6 literals keep their colons in brackets.
        let name = match host.rsplit_once(':') {
            Some((name, port)) if !name.ends_with(']') || host.starts_with('[') => {
                if port.bytes().all(|b| b.is_ascii_digit()) {
                    name
                } else {
                    host
                }
            }
            _ => host,
        };
        for domain in &self.0 {
            if let Some(bucket) = name
                .strip_suffix(domain.as_str())
                .and_then(|rest| rest.strip_suffix('.'))
                .filter(|bucket| !bucket.is_empty())
            {
                return Ok(VirtualHost::new(domain.as_str()).with_bucket(bucket));
            }
        }
        Ok(VirtualHost::new(host))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hosts_under_a_domain_name_their_bucket_and_others_are_path_style() {
        let domains = Domains::new(&["s3.fdw.test".into()]).expect("valid");
        let bucket = |host: &str| {
            domains
                .parse_host_header(host)
                .expect("every host parses")
                .bucket()
                .map(str::to_owned)
        };
        assert_eq!(
            bucket("stage-1.s3.fdw.test:9000").as_deref(),
            Some("stage-1")
        );
        assert_eq!(bucket("a.b.s3.fdw.test").as_deref(), Some("a.b"));
        assert_eq!(bucket("s3.fdw.test:9000"), None);
        assert_eq!(bucket("127.0.0.1:9000"), None);
        assert_eq!(bucket("[::1]:9000"), None);
        assert_eq!(bucket("localhost"), None);
        assert_eq!(bucket("evils3.fdw.test"), None, "a label, not a suffix");
    }

    proptest::proptest! {
        /// Any Host header parses without panicking, and names a bucket only under a
        /// configured domain.
        #[test]
        fn any_host_header_is_safe(host in "\\PC{0,80}") {
            let domains = Domains::new(&["s3.fdw.test".into()]).expect("valid");
            let parsed = domains.parse_host_header(&host).expect("every host parses");
            if let Some(bucket) = parsed.bucket() {
                let under = format!("{}.s3.fdw.test", bucket);
                proptest::prop_assert!(host.contains(&under));
            }
        }
    }

    #[test]
    fn a_domain_with_a_port_or_scheme_is_refused() {
        for bad in ["s3.fdw.test:9000", "http://s3", "", "a..b"] {
            assert!(Domains::new(&[bad.into()]).is_err(), "{bad}");
        }
    }
}
