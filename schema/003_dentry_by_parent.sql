-- kvfs index, schema version 3: entries of a directory in readdir order.
-- Every SQLite index ends with the rowid (here dentry.id, the readdir
-- offset), so this one holds a directory's entries ordered by id: readdir
-- resumes at its offset instead of sorting the whole directory for each
-- batch of entries (quadratic in the directory's size before).
CREATE INDEX dentry_by_parent ON dentry (parent);
