-- Composite conditions: a rule may have a name, and each direction of a policy may combine its
-- rules by a condition tree over those names (nested all / any / not) instead of scale_*_match.
-- A tree is read and written whole with its policy, so it is one JSONB column; NULL means the
-- direction combines by its match. With a tree the match column keeps its default and is not
-- read. Rows written before this migration have no names and no trees.
ALTER TABLE scaling_rules ADD COLUMN name TEXT;
ALTER TABLE scaling_policies ADD COLUMN scale_up_when JSONB;
ALTER TABLE scaling_policies ADD COLUMN scale_down_when JSONB;
