"""Internal. Slices: the pure decisions (`examine`: dedupe, keepers, splits, leaks; `neardup`:
near-duplicate search on hashes; `split`: stable split assignment; `rowfilter`: a slice's
split as a Lance filter), the slice step an engine runs (`step`), and what a stored slice
holds (`report`, `gallery`)."""
