-- PostgreSQL spreads the policy revision over 64 rows here (concurrent writers waited for one
-- row's lock). SQLite runs one writing transaction at a time, so its single row stays; the
-- revision is read as the sum of the rows on both.
SELECT 1;
