//! Status requests to every node on the bus (detection and spatial nodes
//! answer on their status subjects): a request with a reply inbox, every
//! answer within a short window. A roster of the nodes that answer lets a
//! request end as soon as all of them have, so a scrape takes milliseconds.

use std::collections::BTreeMap;
use std::time::Duration;

use futures::StreamExt;
use nvr_actors::status;

/// How long a status request waits for nodes to answer.
pub const GATHER: Duration = Duration::from_millis(300);

/// Sends `body` to `subject` and collects every reply within [`GATHER`];
/// the whole exchange is bounded, so a stalled server cannot hold a caller.
/// Once every node that answered recently has answered again it returns at
/// once (a scrape then takes milliseconds, not the whole window); every
/// [`FULL_GATHER_EVERY`] a background gather waits the whole window, so new
/// nodes are found without a caller waiting for it. Until a first gather has
/// waited the whole window, every caller waits it.
pub async fn gather(
    client: &async_nats::Client,
    subject: &str,
    body: &'static [u8],
) -> Vec<Vec<u8>> {
    if client.connection_state() != async_nats::connection::State::Connected {
        return Vec::new();
    }
    let (expected, discover) = ROSTER.expected(subject);
    if discover {
        let (client, subject) = (client.clone(), subject.to_string());
        tokio::spawn(async move {
            let replies =
                tokio::time::timeout(GATHER * 2, gather_inner(&client, &subject, body, None))
                    .await
                    .unwrap_or_default();
            ROSTER.answered(&subject, replies.iter().filter_map(|r| node_of(r)), true);
        });
    }
    let full = expected.is_none();
    let replies = tokio::time::timeout(
        GATHER * 2,
        gather_inner(client, subject, body, expected.as_ref()),
    )
    .await
    .unwrap_or_default();
    ROSTER.answered(subject, replies.iter().filter_map(|r| node_of(r)), full);
    replies
}

/// Learns which nodes answer the status subjects, in the background, so the
/// first scrape after start does not wait the whole window.
pub fn prime_roster(client: &async_nats::Client) {
    for subject in [
        status::DETECTION_STATUS_SUBJECT,
        status::SPATIAL_STATUS_SUBJECT,
    ] {
        let client = client.clone();
        tokio::spawn(async move {
            gather(&client, subject, b"").await;
        });
    }
}

/// How often a gather waits the whole window even when every known node
/// answered.
const FULL_GATHER_EVERY: Duration = Duration::from_secs(10);
/// A known node that missed this many gathers in a row is forgotten.
const FORGET_AFTER_MISSES: u32 = 3;

/// The nodes that answer each status subject, learnt from their replies.
static ROSTER: std::sync::LazyLock<Roster> = std::sync::LazyLock::new(Roster::default);

/// What is known about the nodes of one subject.
#[derive(Default)]
struct Known {
    /// Node -> gathers it missed in a row.
    nodes: BTreeMap<String, u32>,
    /// Whether a gather that waited the whole window has completed.
    learnt: bool,
    /// When the last background discovery started.
    discovered: Option<std::time::Instant>,
}

/// Per subject: the nodes that answered recently.
#[derive(Default)]
struct Roster {
    /// Subject -> what is known about its nodes.
    subjects: std::sync::Mutex<std::collections::HashMap<String, Known>>,
}

impl Roster {
    /// The nodes to wait for (`None`: wait the whole window, nothing is
    /// learnt yet) and whether a background gather should look for new
    /// nodes now.
    fn expected(&self, subject: &str) -> (Option<std::collections::BTreeSet<String>>, bool) {
        let Ok(mut m) = self.subjects.lock() else {
            return (None, false);
        };
        let k = m.entry(subject.to_string()).or_default();
        if !k.learnt {
            return (None, false);
        }
        let due = k
            .discovered
            .is_none_or(|t| t.elapsed() >= FULL_GATHER_EVERY);
        if due {
            k.discovered = Some(std::time::Instant::now());
        }
        (Some(k.nodes.keys().cloned().collect()), due)
    }

    /// Records who answered a gather (`full`: one that waited the whole window).
    fn answered(&self, subject: &str, nodes: impl Iterator<Item = String>, full: bool) {
        let Ok(mut m) = self.subjects.lock() else {
            return;
        };
        let k = m.entry(subject.to_string()).or_default();
        let answered: std::collections::BTreeSet<String> = nodes.collect();
        for (node, misses) in k.nodes.iter_mut() {
            if !answered.contains(node) {
                *misses += 1;
            }
        }
        k.nodes.retain(|_, misses| *misses < FORGET_AFTER_MISSES);
        for node in answered {
            k.nodes.insert(node, 0);
        }
        if full && !k.learnt {
            k.learnt = true;
            k.discovered = Some(std::time::Instant::now());
        }
    }
}

/// The `node` field of a status reply.
fn node_of(reply: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Node {
        node: String,
    }
    serde_json::from_slice::<Node>(reply).ok().map(|n| n.node)
}

async fn gather_inner(
    client: &async_nats::Client,
    subject: &str,
    body: &'static [u8],
    expected: Option<&std::collections::BTreeSet<String>>,
) -> Vec<Vec<u8>> {
    if expected.is_some_and(|e| e.is_empty()) {
        return Vec::new();
    }
    let inbox = client.new_inbox();
    let Ok(mut sub) = client.subscribe(inbox.clone()).await else {
        return Vec::new();
    };
    if client
        .publish_with_reply(subject.to_string(), inbox, body.into())
        .await
        .is_err()
    {
        return Vec::new();
    }
    let _ = tokio::time::timeout(GATHER, client.flush()).await;
    let mut out = Vec::new();
    let mut missing = expected.cloned();
    let deadline = tokio::time::Instant::now() + GATHER;
    while let Ok(Some(m)) = tokio::time::timeout_at(deadline, sub.next()).await {
        if let (Some(missing), Some(node)) = (missing.as_mut(), node_of(&m.payload)) {
            missing.remove(&node);
        }
        out.push(m.payload.to_vec());
        if missing.as_ref().is_some_and(|m| m.is_empty()) {
            break;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn set(names: &[&str]) -> std::collections::BTreeSet<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn roster_waits_until_learnt_then_forgets_the_silent() {
        let r = Roster::default();
        assert_eq!(
            r.expected("s"),
            (None, false),
            "nothing learnt: wait the window"
        );
        // A partial gather teaches nothing that could cut the next one short.
        r.answered("s", ["a".to_string()].into_iter(), false);
        assert_eq!(r.expected("s").0, None);
        r.answered("s", ["a".to_string(), "b".to_string()].into_iter(), true);
        assert_eq!(r.expected("s"), (Some(set(&["a", "b"])), false));
        for _ in 0..FORGET_AFTER_MISSES {
            r.answered("s", ["a".to_string()].into_iter(), false);
        }
        assert_eq!(r.expected("s").0, Some(set(&["a"])), "b missed three times");
        // Nodes nobody knew join when they answer.
        r.answered("s", ["a".to_string(), "c".to_string()].into_iter(), false);
        assert_eq!(r.expected("s").0, Some(set(&["a", "c"])));
        assert_eq!(r.expected("other"), (None, false), "subjects are apart");
    }

    #[test]
    fn node_names_come_from_the_reply() {
        assert_eq!(node_of(br#"{"node":"n1","x":1}"#).as_deref(), Some("n1"));
        assert_eq!(node_of(b"not json"), None);
    }
}
