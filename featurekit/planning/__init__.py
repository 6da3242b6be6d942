"""Internal. From a spec to a plan: `project` loads a spec into a `Project` (`resolve`:
plugins, columns, types, fingerprints, every problem at once), `graph` orders features,
slices and recipes, `planner` diffs the project against the table into a frozen `Plan`
(what is new or stale, and why), `inputkeys` and `distinct` count distinct inputs."""
