-- The request log becomes a sealed, append-only audit trail.
--
-- Append-only: no role may UPDATE, DELETE or TRUNCATE `edge_function_logs` or the audit
-- tables. The privileges are revoked from every API role, and because neither privileges
-- nor forced row-level security bind the table owner or a BYPASSRLS role, row and
-- statement triggers refuse the change for them too. The one exception is
-- `purge_audit_log()`: a DELETE passes the trigger only for rows covered by a purge record
-- that was inserted by the same transaction (`audit_purges.xid = pg_current_xact_id()`),
-- and nobody is granted to write `audit_purges`. There is no setting that opens the gate.
--
-- Tamper evidence: every row carries a sequence number and the id of the transaction that
-- inserted it. `seal_audit_log()` seals the rows of settled transactions (those older than
-- the oldest transaction still running) into a checkpoint: one hash per row and a digest
-- chained to the previous checkpoint. `verify_audit_log()` recomputes everything and names
-- the first row or checkpoint that does not match. Inserting a row takes no extra lock:
-- the sequence and the transaction id come from column defaults.

-- Sequence numbers and inserting transactions. Existing rows get a number and the id of
-- this migration's transaction, so the first seal covers them.
ALTER TABLE public.edge_function_logs
  ADD COLUMN seq bigint GENERATED ALWAYS AS IDENTITY,
  ADD COLUMN xid xid8 NOT NULL DEFAULT pg_current_xact_id();
ALTER TABLE public.edge_function_logs
  ADD CONSTRAINT edge_function_logs_seq_key UNIQUE (seq);
CREATE INDEX edge_function_logs_xid_idx ON public.edge_function_logs (xid);
COMMENT ON COLUMN public.edge_function_logs.seq IS
  'Sequence number of the row in the audit trail (identity; gaps come from rolled-back inserts).';
COMMENT ON COLUMN public.edge_function_logs.xid IS
  'The transaction that inserted the row; sealing covers only transactions that have ended.';

REVOKE INSERT, UPDATE, DELETE, TRUNCATE ON TABLE public.edge_function_logs
  FROM PUBLIC, anon, authenticated, service_role;
REVOKE ALL ON SEQUENCE public.edge_function_logs_seq_seq
  FROM PUBLIC, anon, authenticated, service_role;

-- Checkpoints: each seals the rows of the transactions with xid in
-- [previous_horizon, horizon). digest = sha256(previous_digest || row hashes in seq order).
CREATE TABLE public.audit_checkpoints (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  horizon xid8 NOT NULL,
  previous_horizon xid8 NOT NULL,
  first_seq bigint NOT NULL,
  last_seq bigint NOT NULL,
  row_count bigint NOT NULL CHECK (row_count > 0),
  previous_digest bytea NOT NULL CHECK (octet_length(previous_digest) = 32),
  digest bytea NOT NULL CHECK (octet_length(digest) = 32),
  created_at timestamptz NOT NULL DEFAULT now(),
  CHECK (horizon > previous_horizon),
  CHECK (first_seq <= last_seq)
);
COMMENT ON TABLE public.audit_checkpoints IS
  'Sealed spans of edge_function_logs, chained by digest. Written only by seal_audit_log().';

-- One seal per sealed row: the row's hash when it was sealed. No foreign key to the log:
-- a seal must outlive a row that was removed, so that verification can name it.
CREATE TABLE public.audit_log_seals (
  seq bigint PRIMARY KEY,
  checkpoint_id bigint NOT NULL REFERENCES public.audit_checkpoints (id),
  row_hash bytea NOT NULL CHECK (octet_length(row_hash) = 32)
);
CREATE INDEX audit_log_seals_checkpoint_id_idx ON public.audit_log_seals (checkpoint_id);
COMMENT ON TABLE public.audit_log_seals IS
  'The hash of each sealed edge_function_logs row (audit_row_hash), by seq.';

-- What purges removed. Verification starts from the latest purge: the first kept
-- checkpoint must link to its through_digest and through_horizon.
CREATE TABLE public.audit_purges (
  id bigint GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  xid xid8 NOT NULL DEFAULT pg_current_xact_id(),
  through_checkpoint_id bigint NOT NULL,
  through_horizon xid8 NOT NULL,
  through_digest bytea NOT NULL CHECK (octet_length(through_digest) = 32),
  checkpoints_removed integer NOT NULL CHECK (checkpoints_removed > 0),
  rows_removed bigint NOT NULL CHECK (rows_removed >= 0),
  purged_before timestamptz NOT NULL,
  created_at timestamptz NOT NULL DEFAULT now()
);
COMMENT ON TABLE public.audit_purges IS
  'Purges of sealed checkpoints, oldest first. Written only by purge_audit_log().';

ALTER TABLE public.audit_checkpoints ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.audit_checkpoints FORCE ROW LEVEL SECURITY;
ALTER TABLE public.audit_log_seals ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.audit_log_seals FORCE ROW LEVEL SECURITY;
ALTER TABLE public.audit_purges ENABLE ROW LEVEL SECURITY;
ALTER TABLE public.audit_purges FORCE ROW LEVEL SECURITY;
CREATE POLICY audit_checkpoints_select_admin ON public.audit_checkpoints
  FOR SELECT TO authenticated
  USING ((SELECT public.is_admin()));
CREATE POLICY audit_log_seals_select_admin ON public.audit_log_seals
  FOR SELECT TO authenticated
  USING ((SELECT public.is_admin()));
CREATE POLICY audit_purges_select_admin ON public.audit_purges
  FOR SELECT TO authenticated
  USING ((SELECT public.is_admin()));
REVOKE ALL ON TABLE public.audit_checkpoints, public.audit_log_seals, public.audit_purges
  FROM PUBLIC, anon, authenticated, service_role;
GRANT SELECT ON TABLE public.audit_checkpoints, public.audit_log_seals, public.audit_purges
  TO authenticated, service_role;
REVOKE ALL ON SEQUENCE public.audit_checkpoints_id_seq, public.audit_purges_id_seq
  FROM PUBLIC, anon, authenticated, service_role;

-- The hash of one log row: sha256 over a canonical serialization of every column, the
-- one definition sealing and verification share. A jsonb array (its text output is
-- canonical) of a version label and the columns in a fixed order; `details` is wrapped so
-- that SQL NULL and JSON null differ; `created_at` is integer microseconds since the
-- epoch, so the session's time zone and date style do not matter.
CREATE FUNCTION public.audit_row_hash(r public.edge_function_logs)
RETURNS bytea
LANGUAGE sql
STABLE
PARALLEL SAFE
AS $$
  SELECT pg_catalog.sha256(pg_catalog.convert_to(pg_catalog.jsonb_build_array(
    'aerelion.edge_function_logs.v1',
    r.seq,
    r.xid::text,
    r.id,
    r.function_name,
    r.level,
    r.message,
    CASE WHEN r.details IS NOT NULL THEN pg_catalog.jsonb_build_array(r.details) END,
    r.user_id,
    r.ip_address,
    r.duration_ms,
    r.status_code,
    CASE WHEN pg_catalog.isfinite(r.created_at)
      THEN pg_catalog.to_jsonb((EXTRACT(EPOCH FROM r.created_at) * 1000000)::bigint)
      ELSE pg_catalog.to_jsonb(r.created_at::text)
    END
  )::text, 'UTF8'))
$$;
REVOKE ALL ON FUNCTION public.audit_row_hash(public.edge_function_logs)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.audit_row_hash(public.edge_function_logs) TO service_role;

-- The previous_digest of the first checkpoint ever.
CREATE FUNCTION public.audit_genesis_digest()
RETURNS bytea
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
  SELECT pg_catalog.sha256(pg_catalog.convert_to('aerelion.audit_log.genesis.v1', 'UTF8'))
$$;
REVOKE ALL ON FUNCTION public.audit_genesis_digest()
  FROM PUBLIC, anon, authenticated, service_role;

-- The chain rule: a checkpoint's digest from the previous digest and its row hashes
-- (32 bytes each, concatenated in seq order).
CREATE FUNCTION public.audit_chain_digest(p_previous_digest bytea, p_row_hashes bytea)
RETURNS bytea
LANGUAGE sql
IMMUTABLE
PARALLEL SAFE
AS $$
  SELECT pg_catalog.sha256(p_previous_digest OPERATOR(pg_catalog.||) p_row_hashes)
$$;
REVOKE ALL ON FUNCTION public.audit_chain_digest(bytea, bytea)
  FROM PUBLIC, anon, authenticated, service_role;

-- Append-only, for every role. UPDATE and TRUNCATE are always refused. A DELETE passes
-- only for rows covered by a purge record inserted by the current transaction, which only
-- purge_audit_log() can write.
CREATE FUNCTION public.audit_append_only()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $$
BEGIN
  IF TG_OP = 'DELETE' AND TG_TABLE_SCHEMA = 'public' THEN
    IF TG_TABLE_NAME = 'edge_function_logs' THEN
      IF EXISTS (
        SELECT FROM public.audit_purges AS p
        JOIN public.audit_log_seals AS s ON s.checkpoint_id <= p.through_checkpoint_id
        WHERE p.xid = pg_catalog.pg_current_xact_id() AND s.seq = OLD.seq
      ) THEN
        RETURN OLD;
      END IF;
    ELSIF TG_TABLE_NAME = 'audit_log_seals' THEN
      IF EXISTS (
        SELECT FROM public.audit_purges AS p
        WHERE p.xid = pg_catalog.pg_current_xact_id()
          AND OLD.checkpoint_id <= p.through_checkpoint_id
      ) THEN
        RETURN OLD;
      END IF;
    ELSIF TG_TABLE_NAME = 'audit_checkpoints' THEN
      IF EXISTS (
        SELECT FROM public.audit_purges AS p
        WHERE p.xid = pg_catalog.pg_current_xact_id() AND OLD.id <= p.through_checkpoint_id
      ) THEN
        RETURN OLD;
      END IF;
    END IF;
  END IF;
  RAISE EXCEPTION '%.% is append-only', TG_TABLE_SCHEMA, TG_TABLE_NAME
    USING ERRCODE = '42501',
          HINT = 'rows leave only through public.purge_audit_log()';
END
$$;
REVOKE ALL ON FUNCTION public.audit_append_only()
  FROM PUBLIC, anon, authenticated, service_role;

CREATE TRIGGER edge_function_logs_no_update
  BEFORE UPDATE ON public.edge_function_logs
  FOR EACH ROW EXECUTE FUNCTION public.audit_append_only();
CREATE TRIGGER edge_function_logs_no_delete
  BEFORE DELETE ON public.edge_function_logs
  FOR EACH ROW EXECUTE FUNCTION public.audit_append_only();
CREATE TRIGGER edge_function_logs_no_truncate
  BEFORE TRUNCATE ON public.edge_function_logs
  FOR EACH STATEMENT EXECUTE FUNCTION public.audit_append_only();
CREATE TRIGGER audit_checkpoints_no_update
  BEFORE UPDATE ON public.audit_checkpoints
  FOR EACH ROW EXECUTE FUNCTION public.audit_append_only();
CREATE TRIGGER audit_checkpoints_no_delete
  BEFORE DELETE ON public.audit_checkpoints
  FOR EACH ROW EXECUTE FUNCTION public.audit_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate
  BEFORE TRUNCATE ON public.audit_checkpoints
  FOR EACH STATEMENT EXECUTE FUNCTION public.audit_append_only();
CREATE TRIGGER audit_log_seals_no_update
  BEFORE UPDATE ON public.audit_log_seals
  FOR EACH ROW EXECUTE FUNCTION public.audit_append_only();
CREATE TRIGGER audit_log_seals_no_delete
  BEFORE DELETE ON public.audit_log_seals
  FOR EACH ROW EXECUTE FUNCTION public.audit_append_only();
CREATE TRIGGER audit_log_seals_no_truncate
  BEFORE TRUNCATE ON public.audit_log_seals
  FOR EACH STATEMENT EXECUTE FUNCTION public.audit_append_only();
CREATE TRIGGER audit_purges_no_update
  BEFORE UPDATE ON public.audit_purges
  FOR EACH ROW EXECUTE FUNCTION public.audit_append_only();
CREATE TRIGGER audit_purges_no_delete
  BEFORE DELETE ON public.audit_purges
  FOR EACH ROW EXECUTE FUNCTION public.audit_append_only();
CREATE TRIGGER audit_purges_no_truncate
  BEFORE TRUNCATE ON public.audit_purges
  FOR EACH STATEMENT EXECUTE FUNCTION public.audit_append_only();

-- A purge record names a real checkpoint (its digest and horizon), moves forward, and
-- belongs to the transaction that inserts it, whoever inserts it.
CREATE FUNCTION public.audit_check_purge()
RETURNS trigger
LANGUAGE plpgsql
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  v_checkpoint public.audit_checkpoints;
BEGIN
  NEW.xid := pg_catalog.pg_current_xact_id();
  SELECT * INTO v_checkpoint
  FROM public.audit_checkpoints AS c
  WHERE c.id = NEW.through_checkpoint_id;
  IF NOT FOUND
     OR v_checkpoint.digest IS DISTINCT FROM NEW.through_digest
     OR v_checkpoint.horizon IS DISTINCT FROM NEW.through_horizon THEN
    RAISE EXCEPTION 'a purge record must name a checkpoint with its digest and horizon'
      USING ERRCODE = '23514';
  END IF;
  IF EXISTS (
    SELECT FROM public.audit_purges AS p
    WHERE p.through_checkpoint_id >= NEW.through_checkpoint_id
  ) THEN
    RAISE EXCEPTION 'checkpoint % was already purged', NEW.through_checkpoint_id
      USING ERRCODE = '23514';
  END IF;
  RETURN NEW;
END
$$;
REVOKE ALL ON FUNCTION public.audit_check_purge()
  FROM PUBLIC, anon, authenticated, service_role;

CREATE TRIGGER audit_purges_check
  BEFORE INSERT ON public.audit_purges
  FOR EACH ROW EXECUTE FUNCTION public.audit_check_purge();

-- Seal the settled rows: those of transactions with xid in [previous horizon, horizon),
-- where horizon is the oldest transaction still running (rows of running transactions
-- have xid >= horizon, so they wait for the next seal; transactions commit out of order,
-- which is why the sequence alone cannot be used). One sealer at a time. Returns the new
-- checkpoint, or NULL when there was nothing to seal.
CREATE FUNCTION public.seal_audit_log()
RETURNS public.audit_checkpoints
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  v_previous_horizon xid8;
  v_previous_digest bytea;
  v_horizon xid8;
  v_own xid8;
  v_checkpoint public.audit_checkpoints;
BEGIN
  -- The horizon and the previous checkpoint must be read after the lock, with a fresh
  -- snapshot: only READ COMMITTED takes one per statement.
  IF pg_catalog.current_setting('transaction_isolation') <> 'read committed' THEN
    RAISE EXCEPTION 'seal_audit_log() runs only in a READ COMMITTED transaction'
      USING ERRCODE = '55000';
  END IF;
  PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('aerelion.audit_log'));

  SELECT c.horizon, c.digest INTO v_previous_horizon, v_previous_digest
  FROM public.audit_checkpoints AS c
  ORDER BY c.id DESC
  LIMIT 1;
  IF NOT FOUND THEN
    SELECT p.through_horizon, p.through_digest INTO v_previous_horizon, v_previous_digest
    FROM public.audit_purges AS p
    ORDER BY p.id DESC
    LIMIT 1;
    IF NOT FOUND THEN
      v_previous_horizon := '0'::xid8;
      v_previous_digest := public.audit_genesis_digest();
    END IF;
  END IF;

  v_horizon := pg_catalog.pg_snapshot_xmin(pg_catalog.pg_current_snapshot());
  v_own := pg_catalog.pg_current_xact_id_if_assigned();
  IF v_own IS NOT NULL AND v_own < v_horizon THEN
    v_horizon := v_own;  -- rows this transaction wrote are not settled either
  END IF;
  IF v_horizon <= v_previous_horizon THEN
    RETURN NULL;
  END IF;

  WITH settled AS MATERIALIZED (
    SELECT l.seq, public.audit_row_hash(l) AS row_hash
    FROM public.edge_function_logs AS l
    WHERE l.xid >= v_previous_horizon AND l.xid < v_horizon
  ),
  summary AS (
    SELECT count(*) AS n, min(s.seq) AS first_seq, max(s.seq) AS last_seq,
           public.audit_chain_digest(
             v_previous_digest, string_agg(s.row_hash, ''::bytea ORDER BY s.seq)
           ) AS chained
    FROM settled AS s
  ),
  new_checkpoint AS (
    INSERT INTO public.audit_checkpoints (
      horizon, previous_horizon, first_seq, last_seq, row_count, previous_digest, digest
    )
    SELECT v_horizon, v_previous_horizon, m.first_seq, m.last_seq, m.n, v_previous_digest,
           m.chained
    FROM summary AS m
    WHERE m.n > 0
    RETURNING *
  ),
  new_seals AS (
    INSERT INTO public.audit_log_seals (seq, checkpoint_id, row_hash)
    SELECT s.seq, c.id, s.row_hash
    FROM settled AS s CROSS JOIN new_checkpoint AS c
  )
  SELECT * INTO v_checkpoint FROM new_checkpoint;
  IF NOT FOUND THEN
    RETURN NULL;
  END IF;
  RETURN v_checkpoint;
END
$$;
REVOKE ALL ON FUNCTION public.seal_audit_log() FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.seal_audit_log() TO service_role;

-- Recompute everything, in one snapshot, and name the first fault in seq order:
--   row <seq> was changed | was removed | was inserted behind the seal | names a
--   transaction that has not started (a forged xid that would never be sealed),
--   checkpoint <id> does not link to … | does not match its seals | … .
-- Rows of transactions at or past the head checkpoint's horizon are not sealed yet and
-- only counted. head_digest is the latest checkpoint's digest (after a purge of every
-- checkpoint, the purge's), for operators to record outside the database.
CREATE FUNCTION public.verify_audit_log()
RETURNS TABLE (
  ok boolean,
  checkpoints integer,
  sealed_rows bigint,
  unsealed_rows bigint,
  fault text,
  fault_seq bigint,
  head_digest text
)
LANGUAGE sql
STABLE
SECURITY DEFINER
SET search_path = ''
AS $$
  WITH
  purge_point AS (
    SELECT p.id, p.through_horizon, p.through_digest
    FROM public.audit_purges AS p
    ORDER BY p.id DESC
    LIMIT 1
  ),
  base AS (
    SELECT (SELECT pp.id FROM purge_point AS pp) AS purge_id,
           coalesce((SELECT pp.through_horizon FROM purge_point AS pp), '0'::xid8) AS horizon,
           coalesce(
             (SELECT pp.through_digest FROM purge_point AS pp), public.audit_genesis_digest()
           ) AS digest
  ),
  chain AS (
    SELECT c.id, c.horizon, c.previous_horizon, c.first_seq, c.last_seq, c.row_count,
           c.previous_digest, c.digest,
           lag(c.id) OVER w AS prior_id,
           coalesce(lag(c.horizon) OVER w, b.horizon) AS expected_horizon,
           coalesce(lag(c.digest) OVER w, b.digest) AS expected_digest
    FROM public.audit_checkpoints AS c CROSS JOIN base AS b
    WINDOW w AS (ORDER BY c.id)
  ),
  latest AS (
    SELECT c.horizon, c.digest FROM chain AS c ORDER BY c.id DESC LIMIT 1
  ),
  head AS (
    SELECT coalesce((SELECT l.horizon FROM latest AS l), b.horizon) AS horizon,
           CASE WHEN EXISTS (SELECT FROM latest) THEN (SELECT l.digest FROM latest AS l)
                WHEN b.purge_id IS NOT NULL THEN b.digest
           END AS digest,
           -- No transaction at or past this one had started when the snapshot was taken.
           pg_snapshot_xmax(pg_current_snapshot()) AS next_xid
    FROM base AS b
  ),
  joined AS (
    SELECT coalesce(s.seq, l.seq) AS seq, s.checkpoint_id, s.row_hash, l.xid,
           l.seq IS NOT NULL AS present,
           CASE WHEN s.seq IS NOT NULL AND l.seq IS NOT NULL
             THEN public.audit_row_hash(l)
           END AS actual_hash
    FROM public.audit_log_seals AS s
    FULL JOIN public.edge_function_logs AS l ON l.seq = s.seq
  ),
  sums AS (
    SELECT s.checkpoint_id, count(*) AS n, min(s.seq) AS first_seq, max(s.seq) AS last_seq,
           string_agg(s.row_hash, ''::bytea ORDER BY s.seq) AS hashes
    FROM public.audit_log_seals AS s
    GROUP BY s.checkpoint_id
  ),
  out_of_range AS (
    SELECT DISTINCT j.checkpoint_id
    FROM joined AS j JOIN chain AS c ON c.id = j.checkpoint_id
    WHERE j.present AND (j.xid < c.previous_horizon OR j.xid >= c.horizon)
  ),
  faults AS (
    SELECT coalesce(u.first_seq, c.first_seq) AS pos, 0 AS kind, c.id AS ordinal,
           NULL::bigint AS seq,
           CASE
             WHEN c.previous_digest IS DISTINCT FROM c.expected_digest
                  OR c.previous_horizon IS DISTINCT FROM c.expected_horizon
               THEN format('checkpoint %s does not link to %s', c.id,
                      CASE WHEN c.prior_id IS NOT NULL THEN format('checkpoint %s', c.prior_id)
                           WHEN b.purge_id IS NOT NULL THEN format('purge %s', b.purge_id)
                           ELSE 'the genesis digest'
                      END)
             WHEN c.horizon <= c.previous_horizon
               THEN format('checkpoint %s has an empty xid range', c.id)
             WHEN u.checkpoint_id IS NULL
                  OR u.n <> c.row_count
                  OR u.first_seq <> c.first_seq
                  OR u.last_seq <> c.last_seq
                  OR public.audit_chain_digest(c.previous_digest, u.hashes) <> c.digest
               THEN format('checkpoint %s does not match its seals', c.id)
             WHEN EXISTS (SELECT FROM out_of_range AS o WHERE o.checkpoint_id = c.id)
               THEN format('checkpoint %s does not cover the transactions of its rows', c.id)
           END AS fault
    FROM chain AS c
    CROSS JOIN base AS b
    LEFT JOIN sums AS u ON u.checkpoint_id = c.id
    UNION ALL
    SELECT u.first_seq, 0, u.checkpoint_id, NULL::bigint,
           format('checkpoint %s was removed', u.checkpoint_id)
    FROM sums AS u
    WHERE NOT EXISTS (SELECT FROM chain AS c WHERE c.id = u.checkpoint_id)
    UNION ALL
    SELECT j.seq, 1, 0, j.seq,
           CASE WHEN j.row_hash IS NULL AND j.xid < h.horizon
                  THEN format('row %s was inserted behind the seal', j.seq)
                WHEN j.row_hash IS NULL
                  THEN format('row %s names a transaction that has not started', j.seq)
                WHEN NOT j.present THEN format('row %s was removed', j.seq)
                ELSE format('row %s was changed', j.seq)
           END
    FROM joined AS j CROSS JOIN head AS h
    WHERE CASE WHEN j.row_hash IS NULL THEN j.xid < h.horizon OR j.xid >= h.next_xid
               ELSE NOT j.present OR j.actual_hash IS DISTINCT FROM j.row_hash
          END
  ),
  first_fault AS (
    SELECT f.fault, f.seq
    FROM faults AS f
    WHERE f.fault IS NOT NULL
    ORDER BY f.pos, f.kind, f.ordinal
    LIMIT 1
  )
  SELECT ff.fault IS NULL,
         (SELECT count(*) FROM chain)::integer,
         (SELECT count(*) FROM public.audit_log_seals),
         (SELECT count(*) FROM joined AS j CROSS JOIN head AS h
          WHERE j.row_hash IS NULL AND j.xid >= h.horizon AND j.xid < h.next_xid),
         ff.fault,
         ff.seq,
         encode(h.digest, 'hex')
  FROM head AS h
  LEFT JOIN first_fault AS ff ON true
$$;
REVOKE ALL ON FUNCTION public.verify_audit_log() FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.verify_audit_log() TO service_role;

-- Remove whole sealed checkpoints, oldest first, while every row of the checkpoint is
-- older than p_before; with their seals and rows. Refused while the log does not verify,
-- so evidence of tampering is never purged. Leaves a purge record (the new starting
-- point of verification) and a `warn` row in the log. Returns the number of rows removed.
CREATE FUNCTION public.purge_audit_log(p_before timestamptz)
RETURNS bigint
LANGUAGE plpgsql
VOLATILE
SECURITY DEFINER
SET search_path = ''
AS $$
DECLARE
  v_verdict record;
  v_through_id bigint;
  v_through public.audit_checkpoints;
  v_checkpoints integer;
  v_rows bigint;
  v_removed bigint;
  v_purge_id bigint;
BEGIN
  IF p_before IS NULL THEN
    RAISE EXCEPTION 'purge_audit_log() needs a cut-off time' USING ERRCODE = '22004';
  END IF;
  IF pg_catalog.current_setting('transaction_isolation') <> 'read committed' THEN
    RAISE EXCEPTION 'purge_audit_log() runs only in a READ COMMITTED transaction'
      USING ERRCODE = '55000';
  END IF;
  PERFORM pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('aerelion.audit_log'));

  SELECT * INTO v_verdict FROM public.verify_audit_log();
  IF NOT v_verdict.ok THEN
    RAISE EXCEPTION 'the audit log does not verify (%): nothing was purged', v_verdict.fault
      USING ERRCODE = '55000';
  END IF;

  WITH spans AS (
    SELECT c.id, c.row_count,
           bool_and(coalesce(newest.created_at < p_before, false)) OVER (ORDER BY c.id)
             AS old_enough
    FROM public.audit_checkpoints AS c
    CROSS JOIN LATERAL (
      SELECT max(l.created_at) AS created_at
      FROM public.audit_log_seals AS s
      JOIN public.edge_function_logs AS l ON l.seq = s.seq
      WHERE s.checkpoint_id = c.id
    ) AS newest
  )
  SELECT max(sp.id), count(*), sum(sp.row_count)
  INTO v_through_id, v_checkpoints, v_rows
  FROM spans AS sp
  WHERE sp.old_enough;
  IF v_through_id IS NULL THEN
    RETURN 0;
  END IF;
  SELECT * INTO v_through FROM public.audit_checkpoints AS c WHERE c.id = v_through_id;

  INSERT INTO public.audit_purges (
    through_checkpoint_id, through_horizon, through_digest, checkpoints_removed,
    rows_removed, purged_before
  )
  VALUES (v_through.id, v_through.horizon, v_through.digest, v_checkpoints, v_rows, p_before)
  RETURNING id INTO v_purge_id;

  DELETE FROM public.edge_function_logs AS l
  USING public.audit_log_seals AS s
  WHERE s.seq = l.seq AND s.checkpoint_id <= v_through.id;
  GET DIAGNOSTICS v_removed = ROW_COUNT;
  IF v_removed <> v_rows THEN
    RAISE EXCEPTION 'purge found % rows where the checkpoints seal %', v_removed, v_rows
      USING ERRCODE = '55000';
  END IF;
  DELETE FROM public.audit_log_seals AS s WHERE s.checkpoint_id <= v_through.id;
  DELETE FROM public.audit_checkpoints AS c WHERE c.id <= v_through.id;

  PERFORM public.record_edge_function_log(
    p_function_name => 'audit',
    p_message => format(
      'purged %s %s in %s %s (through checkpoint %s), all older than %s',
      v_rows, CASE WHEN v_rows = 1 THEN 'row' ELSE 'rows' END,
      v_checkpoints, CASE WHEN v_checkpoints = 1 THEN 'checkpoint' ELSE 'checkpoints' END,
      v_through.id, p_before
    ),
    p_status_code => NULL,
    p_duration_ms => NULL,
    p_details => jsonb_build_object(
      'action', 'audit_purge',
      'actor_role', coalesce(auth.role(), session_user::text),
      'purge_id', v_purge_id,
      'rows_removed', v_rows,
      'checkpoints_removed', v_checkpoints,
      'through_checkpoint_id', v_through.id,
      'through_digest', encode(v_through.digest, 'hex'),
      'purged_before', p_before
    ),
    p_level => 'warn'
  );
  RETURN v_rows;
END
$$;
REVOKE ALL ON FUNCTION public.purge_audit_log(timestamptz)
  FROM PUBLIC, anon, authenticated, service_role;
GRANT EXECUTE ON FUNCTION public.purge_audit_log(timestamptz) TO service_role;
