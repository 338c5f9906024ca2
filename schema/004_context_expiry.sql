-- kvfs index, schema version 4: contexts by the time their TTL runs out.
-- The TTL sweep (every second while any TTL is set) read every unpinned
-- context's row to find the expired ones; with these it reads only those.
-- Contexts that follow the mount's ttl= (NULL), by last access:
CREATE INDEX context_ttl_default ON context (last_access) WHERE pin = 0 AND ttl IS NULL;
-- Contexts with a TTL of their own, by when it ends (ns):
CREATE INDEX context_ttl_own ON context (last_access + ttl * 1000000000) WHERE pin = 0 AND ttl > 0;
