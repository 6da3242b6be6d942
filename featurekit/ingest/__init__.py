"""Internal. Rows into the table: `prepare` reads the source and compares it with the table
(new, changed, gone rows; files named by rows, `files`; text made safe, `sanitize`; a content
hash per row, `rowhash`), `write` writes what changed (keyed: never a duplicate)."""
