-- Statements of the benchmark functions.

-- bench_ping --
-- One trivial query as the caller
SELECT auth.uid() AS user_id;
