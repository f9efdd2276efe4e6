-- History retention: the daemon deletes rows older than history_retention in small batches. The
-- table stays append-only for everyone else: a row may be deleted only inside the pruning
-- transaction, which sets `before` for its own duration, and only when it is older than that.
CREATE TABLE scaling_history_prune (
  id     INTEGER PRIMARY KEY CHECK (id = 1),
  before TEXT
);
INSERT INTO scaling_history_prune (id, before) VALUES (1, NULL);
DROP TRIGGER scaling_history_append_only_delete;
CREATE TRIGGER scaling_history_append_only_delete BEFORE DELETE ON scaling_history
  WHEN (SELECT before FROM scaling_history_prune WHERE id = 1) IS NULL
    OR OLD.executed_at >= (SELECT before FROM scaling_history_prune WHERE id = 1)
BEGIN SELECT RAISE(ABORT, 'scaling_history is append-only (rows older than history_retention are deleted by the daemon)'); END;
