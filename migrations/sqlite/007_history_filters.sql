-- History filters: by policy name (a deleted policy's rows keep its name, not its id) and by
-- status (blocked, failed, succeeded, dry_run), newest first like every history index.
CREATE INDEX idx_scaling_history_name ON scaling_history (policy_name, executed_at DESC, id DESC);
CREATE INDEX idx_scaling_history_status ON scaling_history (status, executed_at DESC, id DESC);
