"""Internal. The built-in plugins (text and sql extractors, sources, the local engine, the
linear_probe trainer), registered through the same hooks as everyone else's."""
