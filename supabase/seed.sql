-- Local development data, run by `make run` (`aerelion db push --include-seed`) and by
-- `supabase db reset`; never by a plain `db push` to production.
SELECT 1;
