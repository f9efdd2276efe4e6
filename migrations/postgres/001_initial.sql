-- Philotes Scaler schema, PostgreSQL flavour. Same file name and meaning as migrations/sqlite/001_initial.sql.

CREATE TABLE scaling_policies (
  id                      TEXT PRIMARY KEY,
  name                    TEXT NOT NULL UNIQUE,
  description             TEXT,
  target_type             TEXT NOT NULL,
  target_id               TEXT,
  executor                TEXT,
  min_replicas            INTEGER NOT NULL CHECK (min_replicas >= 0),
  max_replicas            INTEGER NOT NULL CHECK (max_replicas >= min_replicas),
  cooldown_seconds        INTEGER,
  max_hourly_cost         DOUBLE PRECISION,
  cost_per_replica_hour   DOUBLE PRECISION,
  scale_to_zero           BOOLEAN NOT NULL DEFAULT FALSE,
  enabled                 BOOLEAN NOT NULL DEFAULT TRUE,
  dry_run                 BOOLEAN NOT NULL DEFAULT FALSE,
  on_metric_error         TEXT NOT NULL DEFAULT 'hold',
  fallback_after_failures INTEGER,
  fallback_replicas       INTEGER,
  scale_up_match          TEXT NOT NULL DEFAULT 'all',
  scale_down_match        TEXT NOT NULL DEFAULT 'all',
  source                  TEXT NOT NULL DEFAULT 'api',
  created_at              TIMESTAMPTZ NOT NULL,
  updated_at              TIMESTAMPTZ NOT NULL
);
CREATE INDEX idx_scaling_policies_source ON scaling_policies (source);
CREATE INDEX idx_scaling_policies_target_type ON scaling_policies (target_type);

CREATE TABLE scaling_rules (
  id               TEXT PRIMARY KEY,
  policy_id        TEXT NOT NULL REFERENCES scaling_policies (id) ON DELETE CASCADE,
  rule_type        TEXT NOT NULL CHECK (rule_type IN ('scale_up', 'scale_down')),
  position         INTEGER NOT NULL,
  metric           TEXT NOT NULL,
  source           TEXT,
  operator         TEXT NOT NULL,
  threshold        DOUBLE PRECISION NOT NULL,
  duration_seconds INTEGER NOT NULL DEFAULT 0,
  aggregation      TEXT NOT NULL DEFAULT 'max',
  scale_by         INTEGER NOT NULL,
  created_at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX idx_scaling_rules_policy ON scaling_rules (policy_id, rule_type, position);

CREATE TABLE scaling_schedules (
  id               TEXT PRIMARY KEY,
  policy_id        TEXT NOT NULL REFERENCES scaling_policies (id) ON DELETE CASCADE,
  position         INTEGER NOT NULL,
  cron_expression  TEXT NOT NULL,
  timezone         TEXT NOT NULL DEFAULT 'UTC',
  desired_replicas INTEGER NOT NULL,
  duration_seconds INTEGER NOT NULL DEFAULT 0,
  mode             TEXT NOT NULL DEFAULT 'exact',
  enabled          BOOLEAN NOT NULL DEFAULT TRUE,
  created_at       TIMESTAMPTZ NOT NULL
);
CREATE INDEX idx_scaling_schedules_policy ON scaling_schedules (policy_id, position);

-- History outlives its policy (no foreign key): rows keep policy_id and policy_name.
CREATE TABLE scaling_history (
  id                TEXT PRIMARY KEY,
  policy_id         TEXT,
  policy_name       TEXT NOT NULL,
  action            TEXT NOT NULL,
  target_type       TEXT NOT NULL,
  target_id         TEXT,
  previous_replicas INTEGER NOT NULL,
  new_replicas      INTEGER NOT NULL,
  reason            TEXT NOT NULL,
  reason_code       TEXT,
  triggered_by      TEXT NOT NULL,
  dry_run           BOOLEAN NOT NULL,
  status            TEXT NOT NULL,
  error             TEXT,
  executed_at       TIMESTAMPTZ NOT NULL,
  details           JSONB
);
CREATE INDEX idx_scaling_history_time ON scaling_history (executed_at DESC, id DESC);
CREATE INDEX idx_scaling_history_policy ON scaling_history (policy_id, executed_at DESC, id DESC);
CREATE INDEX idx_scaling_history_action ON scaling_history (action, executed_at DESC, id DESC);
CREATE FUNCTION scaling_history_append_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  RAISE EXCEPTION 'scaling_history is append-only';
END;
$$;
CREATE TRIGGER scaling_history_append_only BEFORE UPDATE OR DELETE ON scaling_history
  FOR EACH ROW EXECUTE FUNCTION scaling_history_append_only();

CREATE TABLE scaling_state (
  policy_id            TEXT PRIMARY KEY REFERENCES scaling_policies (id) ON DELETE CASCADE,
  current_replicas     INTEGER,
  last_change_at       TIMESTAMPTZ,
  last_change_kind     TEXT,
  consecutive_failures INTEGER NOT NULL DEFAULT 0,
  last_blocked         TEXT,
  data                 JSONB NOT NULL DEFAULT '{}',
  updated_at           TIMESTAMPTZ NOT NULL
);
