-- A counter that moves whenever any policy row is inserted, updated or deleted (by any process on
-- this database): the evaluation loop reads this one row each cycle and lists the policies again
-- only when it moved. Rules and schedules change only together with their policy's row.
CREATE TABLE scaling_policy_revision (
  id INTEGER PRIMARY KEY CHECK (id = 1),
  revision INTEGER NOT NULL
);
INSERT INTO scaling_policy_revision (id, revision) VALUES (1, 0);
CREATE TRIGGER scaling_policies_revision_insert AFTER INSERT ON scaling_policies
BEGIN
  UPDATE scaling_policy_revision SET revision = revision + 1 WHERE id = 1;
END;
CREATE TRIGGER scaling_policies_revision_update AFTER UPDATE ON scaling_policies
BEGIN
  UPDATE scaling_policy_revision SET revision = revision + 1 WHERE id = 1;
END;
CREATE TRIGGER scaling_policies_revision_delete AFTER DELETE ON scaling_policies
BEGIN
  UPDATE scaling_policy_revision SET revision = revision + 1 WHERE id = 1;
END;
