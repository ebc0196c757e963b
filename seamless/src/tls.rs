//! TLS session tickets that outlive a restart (feature `rustls`).
//!
//! A client that resumes a session skips the certificate and the key
//! exchange's signature: one round trip and a fraction of the CPU. Its
//! ticket is encrypted with a key of the server's, and a server that makes
//! new keys at every start sends every client into a full handshake at
//! every restart. [`Ticketer`] is a rustls ticketer whose keys the first
//! generation makes and each next one takes through [`crate::state`]: they
//! pass from process to process over the handover endpoint's unix socket
//! and are never written to a file.
//!
//! The keys rotate on a schedule ([`DEFAULT_ROTATION`]): a ticket is
//! encrypted with the current key, and decrypted with the current key or
//! the one before it, kept one more period. The key after the current one
//! is made in advance and handed on too, so that two generations serving
//! side by side at a rotation move to the same key.
//!
//! State that is missing, refused or undecodable never fails a restart:
//! the new generation makes new keys, says so in a warning, and serves;
//! its clients make one full handshake.
//!
//! ```no_run
//! # fn config() -> rustls::ServerConfig { unimplemented!() }
//! let mut config: rustls::ServerConfig = config();
//! // Before `seamless::started()`: takes the previous generation's keys.
//! config.ticketer = seamless::tls::Ticketer::handed_over("tls-tickets");
//! ```

use std::fmt;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, CHACHA20_POLY1305, NONCE_LEN};
use ring::rand::{SecureRandom, SystemRandom};

use crate::{report, state};

pub use rustls;

/// How often the keys rotate, by default: rustls's own ticketer's period.
/// A ticket stays valid from one to two periods.
pub const DEFAULT_ROTATION: Duration = Duration::from_secs(6 * 60 * 60);

/// The longest ticket lifetime TLS 1.3 allows, in seconds.
const MAX_LIFETIME: u64 = 7 * 24 * 60 * 60;
/// The bytes that name a key in each ticket.
const NAME_LEN: usize = 16;
/// The bytes of a ChaCha20-Poly1305 key.
const KEY_LEN: usize = 32;
/// The bytes of the tag after each ticket's ciphertext.
const TAG_LEN: usize = 16;
/// The first bytes of the state: what it is and its format's version.
const MAGIC: &[u8; 8] = b"sl-tkt/1";

/// A rustls ticketer (`ServerConfig::ticketer`) whose keys are handed from
/// each generation to the next: see the [module documentation](self).
///
/// Tickets are `name || nonce || ChaCha20-Poly1305(plaintext)`, the key's
/// name as associated data.
pub struct Ticketer {
    name: String,
    random: SystemRandom,
    keys: RwLock<Keys>,
}

/// A ticket key.
#[derive(Clone)]
struct Key {
    name: [u8; NAME_LEN],
    secret: [u8; KEY_LEN],
}

/// The keys and their schedule; all times in seconds since the epoch.
#[derive(Clone)]
struct Keys {
    period: u64,
    /// When `current` became current.
    since: u64,
    /// Still decrypts, for one period after it stopped encrypting.
    previous: Option<Key>,
    current: Key,
    /// Current at `since + period`.
    next: Key,
}

impl Ticketer {
    /// Takes the keys the previous generation offered under the state
    /// `name` (see [`crate::state`]), or makes new ones, rotating every
    /// [`DEFAULT_ROTATION`]; offers them under `name` to the next
    /// generation. Call it before `seamless::started()`.
    ///
    /// Never fails: state that is refused or undecodable is reported (a
    /// warning) and replaced with new keys.
    ///
    /// ```no_run
    /// # fn config() -> rustls::ServerConfig { unimplemented!() }
    /// let mut config: rustls::ServerConfig = config();
    /// config.ticketer = seamless::tls::Ticketer::handed_over("tls-tickets");
    /// ```
    pub fn handed_over(name: &str) -> Arc<Ticketer> {
        Ticketer::handed_over_with_rotation(name, DEFAULT_ROTATION)
    }

    /// [`handed_over`](Ticketer::handed_over), with keys that rotate every
    /// `rotation` (at least a second). Keys taken from the previous
    /// generation keep the period they were made with.
    ///
    /// ```no_run
    /// let ticketer = seamless::tls::Ticketer::handed_over_with_rotation(
    ///     "tls-tickets",
    ///     std::time::Duration::from_secs(3600),
    /// );
    /// # drop(ticketer);
    /// ```
    pub fn handed_over_with_rotation(name: &str, rotation: Duration) -> Arc<Ticketer> {
        let random = SystemRandom::new();
        let now = unix_now();
        let taken = match state::take(name) {
            Ok(Some(taken)) => match Keys::decode(&taken.bytes) {
                Some(keys) => {
                    report::info!("TLS ticket keys {name:?} taken from the previous generation");
                    Some(keys)
                }
                None => {
                    report::warning!(
                        "TLS ticket keys {name:?} from the previous generation are not \
                         readable ({} bytes): new keys made; clients make one full handshake",
                        taken.bytes.len()
                    );
                    None
                }
            },
            Ok(None) => None,
            Err(e) => {
                report::warning!(
                    "TLS ticket keys {name:?}: {e}: new keys made; clients make one full handshake"
                );
                None
            }
        };
        let keys = taken.unwrap_or_else(|| Keys::new(&random, rotation.as_secs().max(1), now));
        let ticketer = Ticketer {
            name: name.to_owned(),
            random,
            keys: RwLock::new(keys),
        };
        {
            let mut keys = ticketer.keys.write().unwrap_or_else(|e| e.into_inner());
            keys.rotate(&ticketer.random, now);
            ticketer.offer(&keys);
        }
        Arc::new(ticketer)
    }

    /// Offers `keys` to the next generation.
    fn offer(&self, keys: &Keys) {
        if let Err(e) = state::offer(&self.name, keys.encode(), &[]) {
            report::warning!("TLS ticket keys {:?} cannot be offered: {e}", self.name);
        }
    }

    /// The keys as of now, rotated (and offered again) if a period ended.
    fn keys(&self) -> Keys {
        let now = unix_now();
        {
            let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
            if !keys.due(now) {
                return keys.clone();
            }
        }
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        if keys.rotate(&self.random, now) {
            self.offer(&keys);
        }
        keys.clone()
    }
}

impl fmt::Debug for Ticketer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never the keys.
        f.debug_struct("Ticketer")
            .field("name", &self.name)
            .finish_non_exhaustive()
    }
}

impl rustls::server::ProducesTickets for Ticketer {
    fn enabled(&self) -> bool {
        true
    }

    fn lifetime(&self) -> u32 {
        let period = self.keys.read().unwrap_or_else(|e| e.into_inner()).period;
        // TLS 1.3 caps a ticket's lifetime at 7 days (RFC 8446, 4.6.1).
        period.min(MAX_LIFETIME) as u32
    }

    fn encrypt(&self, plain: &[u8]) -> Option<Vec<u8>> {
        self.keys().current.seal(&self.random, plain)
    }

    fn decrypt(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        self.keys().open(ticket)
    }
}

impl Key {
    fn new(random: &SystemRandom) -> Option<Key> {
        let mut key = Key {
            name: [0; NAME_LEN],
            secret: [0; KEY_LEN],
        };
        random.fill(&mut key.name).ok()?;
        random.fill(&mut key.secret).ok()?;
        Some(key)
    }

    fn aead(&self) -> Option<LessSafeKey> {
        let key = UnboundKey::new(&CHACHA20_POLY1305, &self.secret).ok()?;
        Some(LessSafeKey::new(key))
    }

    fn seal(&self, random: &SystemRandom, plain: &[u8]) -> Option<Vec<u8>> {
        let mut nonce = [0u8; NONCE_LEN];
        random.fill(&mut nonce).ok()?;
        let mut ticket = Vec::with_capacity(NAME_LEN + NONCE_LEN + plain.len() + TAG_LEN);
        ticket.extend_from_slice(&self.name);
        ticket.extend_from_slice(&nonce);
        let mut sealed = plain.to_vec();
        self.aead()?
            .seal_in_place_append_tag(
                Nonce::assume_unique_for_key(nonce),
                Aad::from(&self.name),
                &mut sealed,
            )
            .ok()?;
        ticket.extend_from_slice(&sealed);
        Some(ticket)
    }

    fn open(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        let nonce = ticket.get(NAME_LEN..NAME_LEN + NONCE_LEN)?;
        let nonce = Nonce::try_assume_unique_for_key(nonce).ok()?;
        let mut sealed = ticket.get(NAME_LEN + NONCE_LEN..)?.to_vec();
        let plain = self
            .aead()?
            .open_in_place(nonce, Aad::from(&self.name), &mut sealed)
            .ok()?;
        Some(plain.to_vec())
    }
}

/// A key, or none if the system's random source failed (never seen on
/// Linux, where it is `getrandom(2)`): tickets are then not issued.
fn new_key(random: &SystemRandom) -> Key {
    Key::new(random).unwrap_or_else(|| {
        report::error!("no random bytes for a TLS ticket key: tickets are not decryptable");
        Key {
            name: [0; NAME_LEN],
            secret: [0; KEY_LEN],
        }
    })
}

impl Keys {
    /// The ticket opened by the key it names: the previous, current or
    /// next one.
    fn open(&self, ticket: &[u8]) -> Option<Vec<u8>> {
        let name = ticket.get(..NAME_LEN)?;
        [
            self.previous.as_ref(),
            Some(&self.current),
            Some(&self.next),
        ]
        .into_iter()
        .flatten()
        .find(|k| k.name == name)?
        .open(ticket)
    }

    fn new(random: &SystemRandom, period: u64, now: u64) -> Keys {
        Keys {
            period,
            since: now,
            previous: None,
            current: new_key(random),
            next: new_key(random),
        }
    }

    fn due(&self, now: u64) -> bool {
        now >= self.since.saturating_add(self.period)
    }

    /// Moves to the keys of the period `now` falls in; whether they
    /// changed. One period on: the next key becomes current, the current
    /// one previous. Two or more: no key of the last periods is left.
    fn rotate(&mut self, random: &SystemRandom, now: u64) -> bool {
        if !self.due(now) {
            return false;
        }
        let periods = (now - self.since) / self.period;
        if periods == 1 {
            let next = new_key(random);
            self.previous = Some(std::mem::replace(
                &mut self.current,
                std::mem::replace(&mut self.next, next),
            ));
        } else {
            // Tickets of the current key are more than a period old.
            self.previous = None;
            self.current = std::mem::replace(&mut self.next, new_key(random));
        }
        self.since += periods * self.period;
        true
    }

    /// `MAGIC`, period, since, whether a previous key follows, the keys
    /// (previous, current, next), each its name and its secret.
    fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(MAGIC.len() + 17 + 3 * (NAME_LEN + KEY_LEN));
        out.extend_from_slice(MAGIC);
        out.extend_from_slice(&self.period.to_le_bytes());
        out.extend_from_slice(&self.since.to_le_bytes());
        out.push(u8::from(self.previous.is_some()));
        for key in [
            self.previous.as_ref(),
            Some(&self.current),
            Some(&self.next),
        ]
        .into_iter()
        .flatten()
        {
            out.extend_from_slice(&key.name);
            out.extend_from_slice(&key.secret);
        }
        out
    }

    fn decode(bytes: &[u8]) -> Option<Keys> {
        let rest = bytes.strip_prefix(MAGIC)?;
        let (period, rest) = rest.split_first_chunk::<8>()?;
        let (since, rest) = rest.split_first_chunk::<8>()?;
        let (&has_previous, mut rest) = rest.split_first()?;
        let has_previous = match has_previous {
            0 => false,
            1 => true,
            _ => return None,
        };
        let mut key = || -> Option<Key> {
            let (name, after) = rest.split_first_chunk::<NAME_LEN>()?;
            let (secret, after) = after.split_first_chunk::<KEY_LEN>()?;
            rest = after;
            Some(Key {
                name: *name,
                secret: *secret,
            })
        };
        let previous = if has_previous { Some(key()?) } else { None };
        let (current, next) = (key()?, key()?);
        let period = u64::from_le_bytes(*period);
        if !rest.is_empty() || period == 0 {
            return None;
        }
        Some(Keys {
            period,
            since: u64::from_le_bytes(*since),
            previous,
            current,
            next,
        })
    }
}

fn unix_now() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::server::ProducesTickets;

    fn ticketer(keys: Keys) -> Ticketer {
        Ticketer {
            name: "t-tickets".into(),
            random: SystemRandom::new(),
            keys: RwLock::new(keys),
        }
    }

    #[test]
    fn a_ticket_opens_with_its_key_only() {
        let random = SystemRandom::new();
        let t = ticketer(Keys::new(&random, 3600, unix_now()));
        let ticket = t.encrypt(b"session").unwrap();
        assert_eq!(t.decrypt(&ticket).unwrap(), b"session");
        let mut forged = ticket.clone();
        *forged.last_mut().unwrap() ^= 1;
        assert_eq!(t.decrypt(&forged), None);
        assert_eq!(t.decrypt(&ticket[..20]), None);
        let other = ticketer(Keys::new(&random, 3600, unix_now()));
        assert_eq!(other.decrypt(&ticket), None);
    }

    #[test]
    fn keys_survive_their_encoding_and_garbage_is_refused() {
        let random = SystemRandom::new();
        let mut keys = Keys::new(&random, 60, 1000);
        keys.rotate(&random, 1060);
        let t = ticketer(keys.clone());
        let ticket = t.keys.read().unwrap().current.seal(&random, b"s").unwrap();
        let decoded = Keys::decode(&keys.encode()).unwrap();
        assert_eq!(decoded.encode(), keys.encode());
        let next = ticketer(decoded);
        assert_eq!(
            next.keys.read().unwrap().current.open(&ticket).unwrap(),
            b"s"
        );

        let encoded = keys.encode();
        assert!(Keys::decode(&encoded[..encoded.len() - 1]).is_none());
        assert!(Keys::decode(b"garbage").is_none());
        let mut wrong = encoded.clone();
        wrong[MAGIC.len() + 16] = 7;
        assert!(Keys::decode(&wrong).is_none());
    }

    #[test]
    fn rotation_keeps_the_previous_key_one_period() {
        let random = SystemRandom::new();
        let mut keys = Keys::new(&random, 100, 1000);
        let first = keys.current.clone();
        let ticket = first.seal(&random, b"s").unwrap();
        assert!(!keys.rotate(&random, 1099));
        let next = keys.next.name;
        // Two generations holding the same keys rotate to the same one.
        let mut twin = keys.clone();
        assert!(keys.rotate(&random, 1100));
        assert!(twin.rotate(&random, 1150));
        assert_eq!((keys.current.name, keys.since), (next, 1100));
        assert_eq!((twin.current.name, twin.since), (next, 1100));
        assert_eq!(keys.previous.as_ref().unwrap().name, first.name);
        assert!(ticketer(keys.clone()).decrypt_at(&ticket).is_some());
        // A period later the first key is gone.
        assert!(keys.rotate(&random, 1200));
        assert!(ticketer(keys.clone()).decrypt_at(&ticket).is_none());
        // Long idle: nothing of the old periods is left.
        assert!(keys.rotate(&random, 2000));
        assert!(keys.previous.is_none());
        assert_eq!(keys.since, 2000);
    }

    impl Ticketer {
        /// Decrypts with the keys as they are, whatever the clock says.
        fn decrypt_at(&self, ticket: &[u8]) -> Option<Vec<u8>> {
            self.keys.read().unwrap().open(ticket)
        }
    }
}
