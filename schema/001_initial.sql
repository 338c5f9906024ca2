-- kvfs index, schema version 1. See docs/format.md.
-- Times are nanoseconds since the epoch; names are opaque byte strings.
CREATE TABLE meta (
    key   TEXT PRIMARY KEY,
    value BLOB NOT NULL
) WITHOUT ROWID;

CREATE TABLE inode (
    ino    INTEGER PRIMARY KEY AUTOINCREMENT,
    mode   INTEGER NOT NULL,
    uid    INTEGER NOT NULL,
    gid    INTEGER NOT NULL,
    nlink  INTEGER NOT NULL,
    size   INTEGER NOT NULL DEFAULT 0,   -- logical bytes
    stored INTEGER NOT NULL DEFAULT 0,   -- bytes of chunk records
    atime  INTEGER NOT NULL,
    mtime  INTEGER NOT NULL,
    ctime  INTEGER NOT NULL,
    rdev   INTEGER NOT NULL DEFAULT 0,
    target BLOB                          -- symlink target
);

CREATE TABLE dentry (
    id     INTEGER PRIMARY KEY,          -- stable readdir offset
    parent INTEGER NOT NULL,
    name   BLOB NOT NULL,
    ino    INTEGER NOT NULL,
    UNIQUE (parent, name)
);
CREATE INDEX dentry_by_ino ON dentry (ino);

-- One row per stored chunk: record at (seg, off) of len bytes, header included.
CREATE TABLE chunk (
    ino   INTEGER NOT NULL,
    idx   INTEGER NOT NULL,
    seg   INTEGER NOT NULL,
    off   INTEGER NOT NULL,
    len   INTEGER NOT NULL,
    raw   INTEGER NOT NULL,
    codec INTEGER NOT NULL,
    PRIMARY KEY (ino, idx)
) WITHOUT ROWID;

CREATE TABLE xattr (
    ino   INTEGER NOT NULL,
    name  BLOB NOT NULL,
    value BLOB NOT NULL,
    PRIMARY KEY (ino, name)
) WITHOUT ROWID;
