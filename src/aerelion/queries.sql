-- Every statement the Python side runs. Business rules live in the migrations; these
-- mostly call them. Placeholders are psycopg's (%(name)s); {braces} are identifiers.

-- ensure_history --
-- Create the migration history table exactly as the Supabase CLI does
SET LOCAL lock_timeout = '4s';
CREATE SCHEMA IF NOT EXISTS supabase_migrations;
CREATE TABLE IF NOT EXISTS supabase_migrations.schema_migrations (version text NOT NULL PRIMARY KEY);
ALTER TABLE supabase_migrations.schema_migrations ADD COLUMN IF NOT EXISTS statements text[];
ALTER TABLE supabase_migrations.schema_migrations ADD COLUMN IF NOT EXISTS name text;

-- read_history --
-- Applied migrations, oldest first
SELECT version, coalesce(name, '') AS name, statements
FROM supabase_migrations.schema_migrations
ORDER BY version;

-- history_exists --
-- Whether the migration history table exists
SELECT to_regclass('supabase_migrations.schema_migrations') IS NOT NULL AS present;

-- record_migration --
-- Record one applied migration as the Supabase CLI does
INSERT INTO supabase_migrations.schema_migrations (version, name, statements)
VALUES (%(version)s, %(name)s, %(statements)s);

-- ensure_seed_table --
-- Create the seed tracking table exactly as the Supabase CLI does
SET LOCAL lock_timeout = '4s';
CREATE SCHEMA IF NOT EXISTS supabase_migrations;
CREATE TABLE IF NOT EXISTS supabase_migrations.seed_files (path text NOT NULL PRIMARY KEY, hash text NOT NULL);

-- read_seeds --
-- Seed files already run, with the hash of their content
SELECT path, hash FROM supabase_migrations.seed_files;

-- record_seed --
-- Remember that a seed file ran with this content
INSERT INTO supabase_migrations.seed_files (path, hash) VALUES (%(path)s, %(hash)s)
ON CONFLICT (path) DO UPDATE SET hash = EXCLUDED.hash;

-- is_supabase --
-- Hosted Supabase and its local stack have the platform's own superuser role
SELECT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = 'supabase_admin') AS supabase;

-- set_shim_grants --
-- Choose the default privileges the platform shim emulates, for this transaction
SELECT set_config('aerelion.default_grants', %(mode)s, true);

-- lock_migrations --
-- One `db push` at a time per database
SELECT pg_advisory_lock(hashtext('aerelion.migrations'));

-- unlock_migrations --
-- Release the `db push` lock
SELECT pg_advisory_unlock(hashtext('aerelion.migrations'));

-- reset_connection --
-- Forget settings an earlier migration changed on this connection, as the CLI does
RESET ALL;

-- drop_database --
-- Remove a local database and everything in it
DROP DATABASE IF EXISTS {database} WITH (FORCE);

-- create_database --
-- Create an empty database
CREATE DATABASE {database};

-- server_version --
-- The server's version number, e.g. 150008
SELECT current_setting('server_version_num')::int AS version;
