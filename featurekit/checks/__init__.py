"""Data tests: the `checks:` of features and slices, computed by Lance (filtered counts) and
Arrow (`pyarrow.compute`) on the table as it stands; `apply` runs them after it computed and
`featurekit check` runs them alone."""
from .run import CheckReport, CheckResult, keys_text, render_results, run_checks

__all__ = ["CheckReport", "CheckResult", "keys_text", "render_results", "run_checks"]
