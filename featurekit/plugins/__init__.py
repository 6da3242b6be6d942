"""The plugin layer: what plugins implement and how they are found.

`hookspecs` is the contract (one `featurekit_register_*` hook per kind), `extractor`,
`source`, `trainer` and `rowerrors` the base classes plugin authors use (re-exported as
`featurekit.Extractor`, ...), `discovery` finds built-ins and entry points with pluggy, and
`registry` maps names to classes (a clash names both plugins). `function` is the
`@featurekit.extractor` decorator and the class built from a function, `code` the digest of
its code, `local` a spec's `plugins:` files registered through the same hook. Internal apart
from what `featurekit` re-exports."""
