-- 0008: a rep who becomes free is announced with their id ('rep:<id>', was 'rep').
--
-- Routing keeps one snapshot of the reps for the leads routed in the next fraction of a second
-- (dialer/roster.py). A snapshot may show a rep as free who is not (the reservation re-checks
-- and skips them) but must not hide one who became free: with the id, every daemon marks that
-- rep free in its snapshot the moment the notification arrives. Daemons before 0008 compare the
-- payload with 'rep': they take 'rep:<id>' for a lead wake-up and find freed reps by polling
-- (waiting leads are re-routed every waiting_recheck_s), so a rolling upgrade degrades, it does
-- not break. PostgreSQL folds identical notifications of one transaction; with ids, a statement
-- freeing n reps sends n (a lead has at most its ring size of reps).

CREATE OR REPLACE FUNCTION dialer_notify_rep_free() RETURNS trigger
LANGUAGE plpgsql AS $$
BEGIN
    PERFORM pg_notify('dialer_pipeline', 'rep:' || NEW.id);
    RETURN NULL;
END;
$$;
