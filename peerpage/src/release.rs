//! `peerpage keygen` and `peerpage release`: a site's key pair, and signed
//! releases of its index (see `protocol::release`).

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use anyhow::{bail, Context};
use ed25519_dalek::{Signature, Signer as _, SigningKey};
use protocol::manifest::Manifest;
use protocol::release::{index_path, text, Release, SignedRelease, SiteKey, VERSION};
use protocol::site::{INDEX_FILE, MANIFEST_DIR};

use crate::index_dir::{build, write_atomically};

/// The first word of a key file: what it holds, and in which form.
const KEY_FILE_TAG: &str = "peerpage-site-secret-key-v1";

/// Makes a key pair: the secret into `keyfile` (mode 0600, never over an
/// existing file), the public key as the last line of the summary.
pub fn keygen(keyfile: &Path) -> anyhow::Result<String> {
    let mut secret = [0u8; 32];
    getrandom::fill(&mut secret).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    let key = SigningKey::from_bytes(&secret);
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(keyfile)
        .with_context(|| {
            format!(
                "cannot create {} (an existing key file is never overwritten: a site's key \
                 cannot be made again)",
                keyfile.display()
            )
        })?;
    writeln!(file, "{KEY_FILE_TAG} {}", text::encode(&secret))?;
    file.sync_all()?;
    let public = SiteKey(key.verifying_key().to_bytes());
    Ok(format!(
        "wrote the site's secret key to {} (keep it private, and a copy offline: visitors \
         follow this key, and a lost one cannot sign again)\n{public}",
        keyfile.display()
    ))
}

/// The secret key in `keyfile`.
fn read_key(keyfile: &Path) -> anyhow::Result<SigningKey> {
    let text_form = std::fs::read_to_string(keyfile)
        .with_context(|| format!("cannot read the key file {}", keyfile.display()))?;
    let secret = text_form
        .trim()
        .strip_prefix(KEY_FILE_TAG)
        .map(str::trim)
        .and_then(text::decode::<32>)
        .with_context(|| {
            format!(
                "{} is not a key file made by `peerpage keygen`",
                keyfile.display()
            )
        })?;
    Ok(SigningKey::from_bytes(&secret))
}

/// A duration as `30d`, `12h`, `90m`, `3600s` or plain seconds.
pub fn parse_duration(text: &str) -> Result<Duration, String> {
    let (number, unit) = match text.char_indices().find(|(_, c)| !c.is_ascii_digit()) {
        Some((i, _)) => text.split_at(i),
        None => (text, "s"),
    };
    let n: u64 = number
        .parse()
        .map_err(|_| format!("{text:?} is not a duration such as 30d, 12h, 90m or 3600s"))?;
    let seconds = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return Err(format!("{text:?}: the unit is one of s, m, h, d")),
    };
    Ok(Duration::from_secs(n.saturating_mul(seconds)))
}

/// Indexes `dir` and signs a release of it with the key in `keyfile`,
/// valid for `valid`: the index becomes content of the folder and
/// `peerpage.json` the signed record.
pub fn release(
    dir: &Path,
    include: &[String],
    keyfile: &Path,
    valid: Duration,
) -> anyhow::Result<(String, SignedRelease)> {
    let key = read_key(keyfile)?;
    let site = SiteKey(key.verifying_key().to_bytes());
    let record_path = dir.join(INDEX_FILE);
    let previous = match std::fs::read(&record_path) {
        Ok(bytes) => match SignedRelease::parse(&bytes) {
            Ok(old) if old.release.site != site => bail!(
                "{} is a release signed by another key ({}); sign with that key, or move \
                 the site to this one (see the README on key rotation)",
                record_path.display(),
                old.release.site
            ),
            Ok(old) => old.release.seq,
            // A plain index (or anything else): the first release.
            Err(_) => 0,
        },
        Err(_) => 0,
    };
    let built = build(dir, include)?;
    let index_bytes = built.index.to_bytes();
    let manifest = Manifest::describe(&index_bytes, "application/json", Some(INDEX_FILE));
    let address = manifest.address();
    let manifests = dir.join(MANIFEST_DIR);
    write_atomically(&manifests.join(address.to_string()), &manifest.to_bytes())?;
    write_atomically(&dir.join(index_path(&address)), &index_bytes)?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH)?.as_secs();
    let release = Release {
        site,
        seq: previous + 1,
        created: now,
        expires: now.saturating_add(valid.as_secs()),
        index: address,
    };
    let signature: Signature = key.sign(&release.signing_bytes());
    let record = SignedRelease {
        v: VERSION,
        release,
        signature: text::encode(&signature.to_bytes()),
    };
    write_atomically(&record_path, &record.to_bytes())
        .with_context(|| format!("cannot write {}", record_path.display()))?;
    let summary = format!(
        "{}; release {} of site {}, valid until {} (Unix time): {}",
        built.summary,
        record.release.seq,
        site,
        record.release.expires,
        record_path.display()
    );
    Ok((summary, record))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex32(s: &str) -> [u8; 32] {
        hex::decode(s).unwrap().try_into().unwrap()
    }

    /// RFC 8032, section 7.1, tests 1 to 3.
    #[test]
    fn signs_and_verifies_the_rfc_8032_vectors() {
        let vectors = [
            (
                "9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60",
                "d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a",
                "",
                "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b",
            ),
            (
                "4ccd089b28ff96da9db6c346ec114e0f5b8a319f35aba624da8cf6ed4fb8a6fb",
                "3d4017c3e843895a92b70aa74d1b7ebc9c982ccf2ec4968cc0cd55f12af4660c",
                "72",
                "92a009a9f0d4cab8720e820b5f642540a2b27b5416503f8fb3762223ebdb69da085ac1e43e15996e458f3613d0f11d8c387b2eaeb4302aeeb00d291612bb0c00",
            ),
            (
                "c5aa8df43f9f837bedb7442f31dcb7b166d38535076f094b85ce3a2e0b4458f7",
                "fc51cd8e6218a1a38da47ed00230f0580816ed13ba3303ac5deb911548908025",
                "af82",
                "6291d657deec24024827e69c3abe01a30ce548a284743a445e3680d7db5ac3ac18ff9b538d16f290ae67f760984dc6594a7c15e9716ed28dc027beceea1ec40a",
            ),
        ];
        for (secret, public, message, signature) in vectors {
            let key = SigningKey::from_bytes(&hex32(secret));
            assert_eq!(hex::encode(key.verifying_key().to_bytes()), public);
            let message = hex::decode(message).unwrap();
            let signed = key.sign(&message);
            assert_eq!(hex::encode(signed.to_bytes()), signature);
            let verifying = ed25519_dalek::VerifyingKey::from_bytes(&hex32(public)).unwrap();
            assert!(verifying.verify_strict(&message, &signed).is_ok());
        }
    }

    #[test]
    fn a_signed_release_verifies_and_a_changed_one_does_not() {
        let key = SigningKey::from_bytes(&[5; 32]);
        let release = Release {
            site: SiteKey(key.verifying_key().to_bytes()),
            seq: 2,
            created: 10,
            expires: 20,
            index: protocol::ContentId([1; 32]),
        };
        let signature = key.sign(&release.signing_bytes());
        let record = SignedRelease {
            v: VERSION,
            release,
            signature: text::encode(&signature.to_bytes()),
        };
        assert_eq!(record.verify(), Ok(()));
        let mut later = record.clone();
        later.release.seq = 3;
        assert!(later.verify().is_err());
        let mut other = record.clone();
        other.release.site = SiteKey(SigningKey::from_bytes(&[6; 32]).verifying_key().to_bytes());
        assert!(other.verify().is_err());
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("30d"), Ok(Duration::from_secs(30 * 86_400)));
        assert_eq!(parse_duration("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("15"), Ok(Duration::from_secs(15)));
        assert!(parse_duration("3w").is_err());
        assert!(parse_duration("soon").is_err());
    }
}

#[cfg(test)]
mod fixture {
    use super::*;

    /// The record the browser's verifier checks too (`peer-wasm`'s
    /// `browser_tests`): signed with RFC 8032's test 1 key.
    const FIXTURE: &str = include_str!("../tests/fixtures/signed_release.json");

    #[test]
    fn the_shared_fixture_is_what_this_signer_makes() {
        let secret: [u8; 32] =
            hex::decode("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
                .unwrap()
                .try_into()
                .unwrap();
        let key = SigningKey::from_bytes(&secret);
        let release = Release {
            site: SiteKey(key.verifying_key().to_bytes()),
            seq: 4,
            created: 1_796_000_000,
            expires: 1_797_000_000,
            index: protocol::ContentId([0xab; 32]),
        };
        let signature = key.sign(&release.signing_bytes());
        let record = SignedRelease {
            v: VERSION,
            release,
            signature: text::encode(&signature.to_bytes()),
        };
        assert_eq!(String::from_utf8(record.to_bytes()).unwrap(), FIXTURE);
        assert_eq!(
            SignedRelease::parse(FIXTURE.as_bytes()).unwrap().verify(),
            Ok(())
        );
    }
}
