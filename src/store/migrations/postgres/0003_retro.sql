-- Retro-scan: after a rule reload, held messages are inspected again with
-- the new set. retro_version is the set that last looked at a message (so
-- a restarted scan resumes where it stopped); retro_action is set when
-- that set would now let the message through (accept or tag): a release
-- candidate.
ALTER TABLE messages ADD COLUMN retro_version TEXT;
ALTER TABLE messages ADD COLUMN retro_action TEXT;
