-- Target tracking and scaling behaviour. Both are small documents read and written with the rest of
-- the policy, never queried by their parts, so each is one JSON text column: the entries (with their
-- ids) and the behaviour with its defaults applied. Rows written before this migration track no
-- target and have no behaviour.
ALTER TABLE scaling_policies ADD COLUMN target_tracking TEXT NOT NULL DEFAULT '[]';
ALTER TABLE scaling_policies ADD COLUMN behavior TEXT;
