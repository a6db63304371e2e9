//! Per-client key pairs for the S3 endpoint. The access key is the client's id; the
//! secret is an HMAC of it under the server's S3 master key (`s3-master.key`, 32 random
//! bytes, 0600, beside the registry). Nothing per client is stored, so the pair exists
//! exactly as long as the client does.

use crate::AuthError;
use base64::Engine;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use std::path::Path;

const MASTER: &str = "s3-master.key";

/// The server's S3 master key, made (0600) on first use.
pub fn master(dir: &Path) -> Result<Vec<u8>, AuthError> {
    let path = dir.join(MASTER);
    match std::fs::read(&path) {
        Ok(k) if k.len() == 32 => Ok(k),
        Ok(_) => Err(AuthError::Config(format!(
            "{}: not a 32-byte key",
            path.display()
        ))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            crate::keys::private_dir(dir)?;
            let key: [u8; 32] = rand::random();
            let tmp = dir.join(".s3-master.key.tmp");
            crate::keys::write_private(&tmp, &key)?;
            // Another process may have made one meanwhile: the first one stays.
            match std::fs::hard_link(&tmp, &path) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
                Err(e) => return Err(AuthError::Io(format!("{}: {e}", path.display()))),
            }
            let _ = std::fs::remove_file(&tmp);
            master(dir)
        }
        Err(e) => Err(AuthError::Io(format!("{}: {e}", path.display()))),
    }
}

/// The S3 secret key of a client (40 characters, as AWS secret keys are).
pub fn secret(dir: &Path, client_id: &str) -> Result<String, AuthError> {
    Ok(secret_under(&master(dir)?, client_id))
}

/// The same, under a master key already read.
pub fn secret_under(master: &[u8], client_id: &str) -> String {
    // HMAC takes keys of any length: this cannot fail.
    let mut mac = Hmac::<Sha256>::new_from_slice(master).expect("HMAC takes any key length");
    mac.update(b"contrail s3 key v1:");
    mac.update(client_id.as_bytes());
    let digest = mac.finalize().into_bytes();
    let mut text = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest);
    text.truncate(40);
    text
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_clients_s3_secret_is_stable_per_server_and_differs_between_clients() {
        let a = tempfile::tempdir().unwrap();
        let b = tempfile::tempdir().unwrap();
        let one = super::secret(a.path(), "ci").unwrap();
        assert_eq!(one.len(), 40);
        assert_eq!(super::secret(a.path(), "ci").unwrap(), one);
        assert_ne!(super::secret(a.path(), "other").unwrap(), one);
        assert_ne!(super::secret(b.path(), "ci").unwrap(), one);
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(a.path().join("s3-master.key"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600);
    }
}
