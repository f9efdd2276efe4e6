-- The object a policy's executor scales (target_ref: kind, name, namespace, api_version), as one
-- JSON text column read and written with the rest of the policy. Rows written before this
-- migration name no object (null): their executor's mapping of the target type decides.
ALTER TABLE scaling_policies ADD COLUMN target_ref TEXT;
