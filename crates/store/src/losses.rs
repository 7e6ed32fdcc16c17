//! Adding up losses, written once: every backend and report merges loss
//! rows of several agents or sessions the same way.

use crate::model::Loss;

/// Adds `loss` into `out`, summing (saturating) the entry with the same
/// source and reason.
pub(crate) fn merge(out: &mut Vec<Loss>, loss: Loss) {
    match out
        .iter_mut()
        .find(|l| l.source == loss.source && l.reason == loss.reason)
    {
        Some(l) => {
            l.records = l.records.saturating_add(loss.records);
            l.frames = l.frames.saturating_add(loss.frames);
        }
        None => out.push(loss),
    }
}

/// The order losses are reported in: by source, then reason.
pub(crate) fn sort(losses: &mut [Loss]) {
    losses.sort_by(|a, b| (a.source, &a.reason).cmp(&(b.source, &b.reason)));
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::LossSource;

    fn loss(source: LossSource, reason: &str, records: u64) -> Loss {
        Loss {
            source,
            reason: reason.into(),
            records,
            frames: 1,
        }
    }

    #[test]
    fn equal_reasons_add_up_saturating_and_sort() {
        let mut out = Vec::new();
        merge(&mut out, loss(LossSource::Server, "b", 1));
        merge(&mut out, loss(LossSource::Client, "a", u64::MAX));
        merge(&mut out, loss(LossSource::Client, "a", 5));
        sort(&mut out);
        assert_eq!(
            out[0],
            Loss {
                frames: 2,
                ..loss(LossSource::Client, "a", u64::MAX)
            }
        );
        assert_eq!(out[1], loss(LossSource::Server, "b", 1));
    }
}
