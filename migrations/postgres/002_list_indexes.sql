-- Indexes found missing by the API benchmark (bench/api.ts, 1,000,000 history rows):
-- listing policies orders by (created_at, id); per-policy history filtered by action.
CREATE INDEX idx_scaling_policies_created ON scaling_policies (created_at, id);
CREATE INDEX idx_scaling_history_policy_action ON scaling_history (policy_id, action, executed_at DESC, id DESC);

-- Append-only also against TRUNCATE (row triggers do not fire on it). SQLite has no TRUNCATE.
CREATE TRIGGER scaling_history_no_truncate BEFORE TRUNCATE ON scaling_history
  FOR EACH STATEMENT EXECUTE FUNCTION scaling_history_append_only();
