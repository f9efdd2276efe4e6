-- A counter that moves whenever any policy row is inserted, updated or deleted (by any process on
-- this database): the evaluation loop reads this one row each cycle and lists the policies again
-- only when it moved. Rules and schedules change only together with their policy's row. It moves
-- in the writing transaction, so a reader sees the new policies and the new revision together.
CREATE TABLE scaling_policy_revision (
  id integer PRIMARY KEY CHECK (id = 1),
  revision bigint NOT NULL
);
INSERT INTO scaling_policy_revision (id, revision) VALUES (1, 0);
CREATE FUNCTION scaling_policies_bump_revision() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
  UPDATE scaling_policy_revision SET revision = revision + 1 WHERE id = 1;
  RETURN NULL;
END
$$;
-- Per row: a statement that changes no row (an UPDATE or DELETE matching nothing) moves nothing.
CREATE TRIGGER scaling_policies_revision AFTER INSERT OR UPDATE OR DELETE ON scaling_policies
  FOR EACH ROW EXECUTE FUNCTION scaling_policies_bump_revision();
CREATE TRIGGER scaling_policies_revision_truncate AFTER TRUNCATE ON scaling_policies
  FOR EACH STATEMENT EXECUTE FUNCTION scaling_policies_bump_revision();
