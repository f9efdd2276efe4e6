-- A runtime pause (POST .../pause, lifted by POST .../enable), for every policy, file-managed ones
-- included. It is not part of the policy's content: replacements and policy-file reloads write
-- the other columns and leave these as they are, and it does not move updated_at. While
-- paused_at is set the evaluation loop does not list the policy, and no change is claimed for it.
-- Times are ISO-8601 UTC text, as in every other table.
ALTER TABLE scaling_policies ADD COLUMN paused_at TEXT;
ALTER TABLE scaling_policies ADD COLUMN paused_reason TEXT;
