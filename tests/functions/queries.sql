-- Statements of the test-only functions.

-- whoami --
-- Who the database thinks is calling, and what RLS lets them see
SELECT auth.uid() AS user_id,
       auth.role() AS role,
       current_user AS db_role,
       (SELECT display_name FROM public.profiles WHERE id = auth.uid()) AS display_name,
       (SELECT count(*) FROM public.profiles) AS visible_profiles,
       current_setting('request.headers', true)::jsonb AS headers,
       current_setting('request.method', true) AS method,
       current_setting('request.path', true) AS path,
       current_setting('statement_timeout') AS statement_timeout;

-- visible_logs --
-- How many log rows the caller may read
SELECT count(*) AS n FROM public.edge_function_logs;

-- current_role --
-- The database role of this transaction
SELECT current_user AS db_role, auth.role() AS role;

-- update_display_name --
-- Rename a profile (RLS decides whose)
UPDATE public.profiles SET display_name = %(display_name)s WHERE id = %(id)s RETURNING id;

-- fail --
-- Abort the transaction
SELECT 1 / 0 AS never;

-- raise_sqlstate --
-- Raise an error with a chosen SQLSTATE
SELECT public.test_raise(%(code)s, %(message)s);

-- request_headers --
-- The request headers as SQL sees them
SELECT current_setting('request.headers', true)::jsonb AS headers;
