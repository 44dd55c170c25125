//! `watch` for the directory backend: inotify (through `notify`) on the store directory,
//! re-reading the journal whenever it changes.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use notify::{RecursiveMode, Watcher};

use super::read_journal;
use crate::error::StoreError;
use crate::types::Revision;
use crate::watch::{Watch, WatchSender};

struct Feed {
    sender: WatchSender,
    journal: PathBuf,
    /// The last revision delivered.
    last: Revision,
    done: bool,
}

impl Feed {
    /// Delivers the journal entries after `last`.
    fn pump(&mut self) {
        if self.done {
            return;
        }
        let journal = match read_journal(&self.journal) {
            Ok(journal) => journal,
            Err(e) => {
                // A reader can race a compaction's rename; the next event retries. Only a
                // damaged journal is worth a warning.
                tracing::warn!(error = %e, "could not read the store journal for a watch");
                return;
            }
        };
        // Journal revisions are contiguous (a lost line is re-appended by the next writer),
        // so a first entry beyond `last + 1` means the changes in between were compacted.
        if let Some(first) = journal.entries.first() {
            if first.revision > self.last.0 + 1 {
                self.sender.send(Err(StoreError::Compacted {
                    requested: self.last,
                    oldest: Revision(first.revision - 1),
                }));
                self.done = true;
                return;
            }
        }
        let from = self.last.0;
        for entry in journal.entries.iter().filter(|e| e.revision > from) {
            let Some(change) = entry.to_change() else {
                tracing::warn!(key = %entry.key, "skipping a journal entry with an unknown key");
                continue;
            };
            self.last = change.revision;
            if !self.sender.send(Ok(change)) {
                self.done = true;
                return;
            }
        }
    }
}

pub(super) fn start(root: &Path, after: Revision) -> Result<Watch, StoreError> {
    let (sender, mut watch) = Watch::channel(None);
    let journal = root.join("journal");
    let feed = Arc::new(Mutex::new(Feed {
        sender,
        journal: journal.clone(),
        last: after,
        done: false,
    }));
    let handler_feed = feed.clone();
    let mut watcher = notify::recommended_watcher(move |event: notify::Result<notify::Event>| {
        let relevant = match &event {
            Ok(event) => event
                .paths
                .iter()
                .any(|p| p.file_name() == journal.file_name()),
            // An overflow or backend error: re-read to be safe.
            Err(_) => true,
        };
        if relevant {
            if let Ok(mut feed) = handler_feed.lock() {
                feed.pump();
            }
        }
    })
    .map_err(|e| watch_error(root, e))?;
    // Watch first, then read: a change between the two is seen by the handler.
    watcher
        .watch(root, RecursiveMode::NonRecursive)
        .map_err(|e| watch_error(root, e))?;
    if let Ok(mut feed) = feed.lock() {
        feed.pump();
    }
    watch.set_guard(Box::new(watcher));
    Ok(watch)
}

fn watch_error(root: &Path, e: notify::Error) -> StoreError {
    StoreError::Io {
        action: "watch",
        path: root.to_owned(),
        kind: std::io::ErrorKind::Other,
        message: e.to_string(),
    }
}
