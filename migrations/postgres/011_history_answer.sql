-- Each history row's answer, the JSON object the API answers for it (every field, the decision
-- record in `details` included), written once with the row: a page of history is then these
-- texts joined, with no decision record parsed or serialised per request. TEXT, not JSONB: the
-- driver hands text over as it is, where JSONB is printed by the server and parsed by the
-- driver. Rows written before this migration keep NULL here (the table is append-only, so they
-- are never rewritten) and are answered from their columns, the same JSON, until history
-- retention deletes them. Adding a column without a default rewrites nothing.
ALTER TABLE scaling_history ADD COLUMN answer_json TEXT;
