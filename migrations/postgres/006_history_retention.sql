-- History retention: the daemon deletes rows older than history_retention in small batches. The
-- table stays append-only for everyone else: a row may be deleted only inside the pruning
-- transaction, which sets `before` for its own duration, and only when it is older than that.
CREATE TABLE scaling_history_prune (
  id     integer PRIMARY KEY CHECK (id = 1),
  before timestamptz
);
INSERT INTO scaling_history_prune (id, before) VALUES (1, NULL);
CREATE OR REPLACE FUNCTION scaling_history_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
DECLARE
  cutoff timestamptz;
BEGIN
  IF TG_OP = 'DELETE' THEN
    SELECT before INTO cutoff FROM scaling_history_prune WHERE id = 1;
    IF cutoff IS NOT NULL AND OLD.executed_at < cutoff THEN
      RETURN OLD;
    END IF;
  END IF;
  RAISE EXCEPTION 'scaling_history is append-only (rows older than history_retention are deleted by the daemon)';
END;
$$;
