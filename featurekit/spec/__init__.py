"""Internal. The spec file: YAML read with the position of every key (`document`), the strict
frozen models of format 1 (`models`), the names a spec may give (`names`), SQL filters checked
by Lance without evaluating them (`sql`), and pydantic errors turned into `path:line:col`
problems (`problems`). Imports nothing of featurekit but `errors`."""
