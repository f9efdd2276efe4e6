-- Every write of a policy's state is a compare-and-set on this version: a daemon writes only the
-- version it read (or, for a policy with no state yet, inserts version 1), and each write moves it
-- by one. A daemon whose view of the state is stale (another daemon took over the loop and changed
-- it) therefore cannot claim a change, so no change is executed twice. Rows from before start at 1.
ALTER TABLE scaling_state ADD COLUMN version INTEGER NOT NULL DEFAULT 1;
