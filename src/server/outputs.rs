//! The whole outputs of answers the budget cut ([`super::budget`]), kept for their owner
//! for a while at `codemode://executions/<id>/output`: the model reads the budgeted
//! answer, and a client (or the model, through `resources/read`) can fetch the rest.
//! An output belongs to whoever ran the execution; for anyone else, an expired one and one
//! that never existed read alike.

use std::{
    collections::HashMap,
    sync::Mutex,
    time::{Duration, Instant},
};

use base64::Engine as _;

use crate::digest;

/// Where whole outputs are read.
const PREFIX: &str = "codemode://executions/";
const SUFFIX: &str = "/output";

/// The whole outputs kept now.
#[derive(Debug)]
pub(crate) struct Outputs {
    kept: Mutex<HashMap<String, Kept>>,
    /// How long each is kept, and how many bytes of them at once.
    keep: Duration,
    max_bytes: usize,
}

#[derive(Debug)]
struct Kept {
    owner: String,
    text: String,
    structured: String,
    at: Instant,
}

impl Kept {
    fn bytes(&self) -> usize {
        self.text.len() + self.structured.len()
    }
}

/// A whole output, as `resources/read` gives it.
#[derive(Debug)]
pub(super) struct Whole {
    pub(super) text: String,
    pub(super) structured: String,
}

impl Outputs {
    /// Outputs kept `keep`, at most `max_bytes` of them at once.
    pub(crate) fn new((keep, max_bytes): (Duration, usize)) -> Self {
        Self {
            kept: Mutex::default(),
            keep,
            max_bytes,
        }
    }

    /// How long an output is kept.
    pub(super) fn keep_for(&self) -> Duration {
        self.keep
    }

    /// Keeps the whole output of one answer for `owner`: its URI, or `None` if it is not
    /// kept (keeping is off, or it is larger than all the room there is).
    pub(super) fn keep(&self, owner: &str, text: String, structured: String) -> Option<String> {
        let entry = Kept {
            owner: owner.to_string(),
            text,
            structured,
            at: Instant::now(),
        };
        if self.keep.is_zero() || entry.bytes() > self.max_bytes {
            return None;
        }
        let id =
            base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest::random_bytes::<16>());
        let mut kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        kept.retain(|_, k| k.at.elapsed() < self.keep);
        let mut used: usize = kept.values().map(Kept::bytes).sum();
        // Full: whoever holds the most loses its oldest first, so one client's floods push
        // out its own outputs.
        while used + entry.bytes() > self.max_bytes {
            let Some(oldest) = crate::state::oldest_of_heaviest_owner(
                kept.iter().map(|(id, k)| (id, k.owner.as_str(), k.at)),
            ) else {
                break;
            };
            if let Some(gone) = kept.remove(&oldest) {
                used -= gone.bytes();
            }
        }
        kept.insert(id.clone(), entry);
        Some(format!("{PREFIX}{id}{SUFFIX}"))
    }

    /// The whole output at `uri`, if it is `owner`'s and still kept; `None` for a URI that
    /// is not an output's at all.
    pub(super) fn read(&self, owner: &str, uri: &str) -> Option<Result<Whole, String>> {
        let id = uri.strip_prefix(PREFIX)?.strip_suffix(SUFFIX)?;
        let kept = self.kept.lock().unwrap_or_else(|e| e.into_inner());
        let found = kept
            .get(id)
            .filter(|k| k.owner == owner && k.at.elapsed() < self.keep);
        Some(match found {
            Some(k) => Ok(Whole {
                text: k.text.clone(),
                structured: k.structured.clone(),
            }),
            None => Err(format!(
                "{uri}: no output is kept here under this id for this client: a whole output is kept {} s after its execution (codemode.limits.outputKeepMs), for the client that ran it only, and not past a restart. Run the program again, returning less",
                self.keep.as_secs()
            )),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_output_is_its_owners_for_a_while() {
        let outputs = Outputs::new((Duration::from_secs(60), 1 << 20));
        let uri = outputs.keep("alice", "text".into(), "{}".into()).unwrap();
        assert!(uri.starts_with(PREFIX) && uri.ends_with(SUFFIX));
        assert_eq!(outputs.read("alice", &uri).unwrap().unwrap().text, "text");
        let theirs = outputs.read("bob", &uri).unwrap().unwrap_err();
        let made_up = outputs
            .read("bob", &format!("{PREFIX}AAAAAAAAAAAAAAAAAAAAAA{SUFFIX}"))
            .unwrap()
            .unwrap_err();
        assert_eq!(
            theirs.replace(&uri, "URI"),
            made_up.replace(&format!("{PREFIX}AAAAAAAAAAAAAAAAAAAAAA{SUFFIX}"), "URI"),
            "another's output reads as one that never existed"
        );
        assert!(outputs.read("alice", "codemode://types/all.d.ts").is_none());
    }

    #[test]
    fn expired_and_overflowing_outputs_go() {
        let gone = Outputs::new((Duration::ZERO, 1 << 20));
        assert!(
            gone.keep("a", "t".into(), "{}".into()).is_none(),
            "keeping off"
        );
        let small = Outputs::new((Duration::from_secs(60), 100));
        assert!(small.keep("a", "x".repeat(200), String::new()).is_none());
        let first = small.keep("a", "x".repeat(60), String::new()).unwrap();
        let second = small.keep("b", "y".repeat(60), String::new()).unwrap();
        assert!(small.read("a", &first).unwrap().is_err(), "the oldest went");
        assert!(small.read("b", &second).unwrap().is_ok());
    }
}
