-- Each history row's answer, the JSON object the API answers for it (every field, the decision
-- record in `details` included), written once with the row: a page of history is then these
-- texts joined, with no decision record parsed or serialised per request. Rows written before
-- this migration keep NULL here (the table is append-only, so they are never rewritten) and are
-- answered from their columns, the same JSON, until history retention deletes them.
ALTER TABLE scaling_history ADD COLUMN answer_json TEXT;
