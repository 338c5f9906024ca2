-- kvfs index, schema version 2: cache policy state of contexts.
-- A context is the directory at the mount's context_depth (or, with
-- context_depth=0, a regular file). Times are ns since the epoch.
CREATE TABLE context (
    ino         INTEGER PRIMARY KEY,     -- the context's directory (or file) inode
    last_access INTEGER NOT NULL,        -- last open or read of one of its files
    hits        INTEGER NOT NULL DEFAULT 0,
    pin         INTEGER NOT NULL DEFAULT 0,
    ttl         INTEGER                  -- seconds, 0 = never; NULL = the mount's ttl=
);
CREATE INDEX context_lru ON context (pin, last_access);
