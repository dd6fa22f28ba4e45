//! `--context N`: the previous N admitted turns of each conversation, kept in memory while a
//! job runs, so a user turn can be scored together with them (as a sentence pair).
//!
//! Only turns the policy admits enter the buffer: a turn that may not be processed (excluded
//! region, minor, no consent, unlinked account, a role not targeted) is never tokenized, so it is
//! never context either. Turns are ordered by their `turn` field; a turn's context is the buffered
//! turns of its conversation with a smaller `turn` (all buffered turns when `turn` is missing).
//! Rows without `conversation_id` get no context. The buffer holds at most
//! [`MAX_CONVERSATIONS`] conversations; the one seen least recently is dropped first, so input
//! grouped or sorted by conversation loses nothing. Text is held in memory only, never written.

use std::collections::{BTreeMap, HashMap, VecDeque};
use turnscore::input::Row;

/// Conversations kept at once (memory: about N × 200 bytes × this).
pub const MAX_CONVERSATIONS: usize = 100_000;

/// One conversation's recent admitted turns: `(turn number, text)`, oldest first.
type Turns = VecDeque<(Option<i64>, String)>;

pub struct ContextBuf {
    n: usize,
    /// Per conversation: when it was last used (for eviction) and its turns.
    convs: HashMap<String, (u64, Turns)>,
    /// The same conversations by when they were last used, so that dropping the least recent
    /// one is a lookup, not a scan of all of them per new conversation.
    order: BTreeMap<u64, String>,
    clock: u64,
}

impl ContextBuf {
    pub fn new(n: usize) -> ContextBuf {
        ContextBuf { n, convs: HashMap::new(), order: BTreeMap::new(), clock: 0 }
    }

    /// The context of each row (computed in order, each row seeing the admitted rows before
    /// it), then records the admitted rows. `admitted[i]` says whether row `i` will be scored.
    pub fn contexts(&mut self, rows: &[Row], admitted: &[bool]) -> Vec<Option<String>> {
        rows.iter()
            .zip(admitted)
            .map(|(r, &ok)| {
                let t = r.turn.as_ref().ok()?;
                self.next(t.conversation_id.as_deref(), t.turn, &t.text, ok)
            })
            .collect()
    }

    /// One turn: its context, then (if `admitted`) the turn joins its conversation's buffer.
    pub fn next(
        &mut self,
        conv: Option<&str>,
        turn: Option<i64>,
        text: &str,
        admitted: bool,
    ) -> Option<String> {
        let conv = conv?;
        let ctx = self.context_for(conv, turn);
        if admitted {
            self.push(conv, turn, text);
        }
        ctx
    }

    /// Records admitted rows without computing contexts (replaying rows before a resume point).
    pub fn replay(&mut self, rows: &[Row], admitted: &[bool]) {
        for (r, &ok) in rows.iter().zip(admitted) {
            if let (Ok(t), true) = (&r.turn, ok) {
                if let Some(conv) = t.conversation_id.as_deref() {
                    self.push(conv, t.turn, &t.text);
                }
            }
        }
    }

    fn context_for(&self, conv: &str, turn: Option<i64>) -> Option<String> {
        let (_, q) = self.convs.get(conv)?;
        let before: Vec<&str> = q
            .iter()
            .filter(|(t, _)| match (turn, t) {
                (Some(cur), Some(t)) => *t < cur,
                _ => true,
            })
            .map(|(_, s)| s.as_str())
            .collect();
        let from = before.len().saturating_sub(self.n);
        (from < before.len()).then(|| before[from..].join("\n"))
    }

    fn push(&mut self, conv: &str, turn: Option<i64>, text: &str) {
        if self.n == 0 {
            return;
        }
        self.clock += 1;
        if let Some((seen, _)) = self.convs.get(conv) {
            self.order.remove(seen);
        } else if self.convs.len() >= MAX_CONVERSATIONS {
            // Drop the conversation seen least recently.
            if let Some((_, old)) = self.order.pop_first() {
                self.convs.remove(&old);
            }
        }
        self.order.insert(self.clock, conv.to_string());
        let (seen, q) = self.convs.entry(conv.to_string()).or_default();
        *seen = self.clock;
        // Keep the queue ordered by `turn` (rows without one go last, in arrival order).
        let pos = match turn {
            Some(t) => q.iter().position(|(u, _)| u.is_none_or(|u| u > t)).unwrap_or(q.len()),
            None => q.len(),
        };
        q.insert(pos, (turn, text.to_string()));
        // The N most recent by turn are all a later turn can use; older ones go.
        while q.len() > self.n * 2 + 1 {
            q.pop_front();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use turnscore::input::parse_line;

    fn row(conv: &str, turn: i64, text: &str) -> Row {
        let l = format!(
            r#"{{"id":"{conv}-{turn}","text":"{text}","conversation_id":"{conv}","turn":{turn}}}"#
        );
        parse_line(l.as_bytes(), 1)
    }

    #[test]
    fn context_is_the_previous_admitted_turns_of_the_same_conversation() {
        let mut b = ContextBuf::new(2);
        let rows =
            [row("a", 1, "one"), row("b", 1, "other"), row("a", 2, "two"), row("a", 3, "three")];
        let ctx = b.contexts(&rows, &[true, true, false, true]);
        assert_eq!(ctx[0], None);
        assert_eq!(ctx[1], None);
        assert_eq!(ctx[2].as_deref(), Some("one"));
        // Turn 2 was not admitted: it is not context.
        assert_eq!(ctx[3].as_deref(), Some("one"));
        let more = b.contexts(&[row("a", 4, "four"), row("a", 5, "five")], &[true, true]);
        assert_eq!(more[0].as_deref(), Some("one\nthree"));
        assert_eq!(more[1].as_deref(), Some("three\nfour"), "only the last N");
    }

    #[test]
    fn a_full_buffer_drops_the_conversation_seen_least_recently() {
        let mut b = ContextBuf::new(1);
        for c in 0..MAX_CONVERSATIONS {
            b.next(Some(&format!("c{c}")), Some(1), "t", true);
        }
        // c0 is used again, so c1 is now the least recent; a new conversation evicts it.
        b.next(Some("c0"), Some(2), "t", true);
        b.next(Some("new"), Some(1), "t", true);
        assert_eq!(b.convs.len(), MAX_CONVERSATIONS);
        assert_eq!(b.order.len(), MAX_CONVERSATIONS);
        assert!(b.convs.contains_key("c0") && b.convs.contains_key("c2"));
        assert!(!b.convs.contains_key("c1"));
        assert_eq!(b.next(Some("c1"), Some(2), "t", false), None, "c1's turns are gone");
        assert_eq!(b.next(Some("c2"), Some(2), "t", false).as_deref(), Some("t"));
        // Then c2 (c1 is not back: its last turn was not admitted).
        b.next(Some("new2"), Some(1), "t", true);
        assert!(!b.convs.contains_key("c2") && b.convs.contains_key("c3"));
    }

    #[test]
    fn out_of_order_turns_see_only_earlier_turns() {
        let mut b = ContextBuf::new(3);
        let _ = b.contexts(&[row("c", 5, "five"), row("c", 2, "two")], &[true, true]);
        let ctx = b.contexts(&[row("c", 3, "three")], &[true]);
        assert_eq!(ctx[0].as_deref(), Some("two"));
    }

    #[test]
    fn replay_restores_the_same_state() {
        let rows = [row("a", 1, "one"), row("a", 2, "two"), row("a", 3, "three")];
        let mut full = ContextBuf::new(2);
        let want = full.contexts(&rows, &[true; 3]);
        let mut resumed = ContextBuf::new(2);
        resumed.replay(&rows[..2], &[true; 2]);
        assert_eq!(resumed.contexts(&rows[2..], &[true]), want[2..].to_vec());
    }
}
