"""Internal. A Lance table as featurekit reaches it: `ref` (where: URI, storage options, branch),
`handle` (the one `Table` a command opens; writes return the version they made), `metadata`
(what featurekit keeps in a table: field metadata, state and input-key columns, the apply
log), `datafiles` (column files committed with DataReplacement, the one place below Lance's
public write API), `pages` (where a row sits in a data file, for direct reads), `lock` and
`lease` (one writer per table identity; fenced commits on object stores), `readers` (the
versions live readers hold, which compact keeps), `provenance` (spec file, git, software, user),
`lancedb_import` (lancedb without its REST client's API modules: `featurekit bench`, the Geneva
plugin)."""
