-- Team mode's published checkpoints (issue 16 item 3): every signed checkpoint each member's
-- journal writes, as that member published it. `agp verify --team` checks the members'
-- journals against these rows. Insert-only: agp never updates or deletes a row (the triggers
-- refuse it), and a second, different note for the same origin and size is kept next to the
-- first (the fork is what verify reports), only the identical note is not stored twice.
-- Never edit a shipped migration: add the next file.

CREATE TABLE published_checkpoints (
    id BIGSERIAL PRIMARY KEY,
    -- The daemon that published it ([state] member) and the machine it ran on.
    member TEXT NOT NULL,
    host TEXT NOT NULL,
    -- What the note says (parsed by the publisher; verify re-parses the note itself).
    origin TEXT NOT NULL,
    size BIGINT NOT NULL,
    root TEXT NOT NULL,
    -- The whole signed note, as the journal wrote it.
    note TEXT NOT NULL,
    note_sha256 TEXT NOT NULL,
    -- The verifier key the member says signs its journal (self-asserted: verify prefers the
    -- key the member's journal names when it can read that journal).
    key TEXT NOT NULL,
    published_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    UNIQUE (origin, size, note_sha256)
);
CREATE INDEX published_checkpoints_origin_size ON published_checkpoints (origin, size);

CREATE FUNCTION agp_published_checkpoints_insert_only() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    RAISE EXCEPTION 'published_checkpoints is insert-only: a published checkpoint is never changed or removed';
END $$;
CREATE TRIGGER published_checkpoints_no_update BEFORE UPDATE OR DELETE ON published_checkpoints
    FOR EACH ROW EXECUTE FUNCTION agp_published_checkpoints_insert_only();
CREATE TRIGGER published_checkpoints_no_truncate BEFORE TRUNCATE ON published_checkpoints
    FOR EACH STATEMENT EXECUTE FUNCTION agp_published_checkpoints_insert_only();
