"""Broken specs and exactly what validate must say about each (used by test_validate.py).

Each case: an id, the spec text, and the expected stderr lines before the summary line.
"""
from fktest import BASE_SPEC


def replace(old: str, new: str) -> str:
    assert old in BASE_SPEC, old
    return BASE_SPEC.replace(old, new)


def add(text: str) -> str:
    return BASE_SPEC + text


CASES = [
    ("yaml-syntax", replace("  name: textvqa\n", "  name: [textvqa\n"), [
        "spec.yaml:6:7: (yaml): invalid YAML: while parsing a flow sequence expected ',' or ']', but got ':'",
    ]),
    ("yaml-bad-indent", replace("    extractor: text.count\n", "   extractor: text.count\n"), [
        "spec.yaml:16:11: (yaml): invalid YAML: mapping values are not allowed here",
    ]),
    ("duplicate-key", replace("    inputs: {text: question}\n  ocr_token_count:",
                              "    inputs: {text: question}\n    tier: 1\n    tier: 2\n  ocr_token_count:"), [
        "spec.yaml:15:5: features.question_length.tier: duplicate key 'tier' (first defined at line 14); remove one of them",
    ]),
    ("duplicate-feature", replace("slices:\n", "  question_length:\n    extractor: text.length\n"
                                              "    inputs: {text: answer}\nslices:\n"), [
        "spec.yaml:20:3: features.question_length: duplicate key 'question_length' (first defined at line 11); remove one of them",
    ]),
    ("unknown-top-key", add("owner: me\n"), [
        "spec.yaml:23:1: owner: unknown key 'owner'; valid keys: featurekit, name, table, engine, source, features, slices, recipes, indexes, plugins, targets",
    ]),
    ("unknown-table-key", replace("  name: textvqa\n", "  name: textvqa\n  uri: x\n"), [
        "spec.yaml:6:3: table.uri: unknown key 'uri'; valid keys: db, name, fragment_rows, storage_options, branch",
    ]),
    ("unknown-source-key", replace("  key: question_id\n", "  key: question_id\n  glob: true\n"), [
        "spec.yaml:10:3: source.glob: unknown key 'glob'; valid keys: format, path, key, files, options, files_root, max_file_bytes, on_change, on_skip",
    ]),
    ("unknown-feature-key", replace("    extractor: text.length\n", "    extractor: text.length\n    cache: yes\n"), [
        "spec.yaml:13:5: features.question_length.cache: unknown key 'cache'; valid keys: tier, extractor, inputs, params, resources, only, outputs, on_error, description, checks",
    ]),
    ("unknown-slice-key", add("    limit: 10\n"), [
        "spec.yaml:23:5: slices.text_dense.limit: unknown key 'limit'; valid keys: from, where, dedupe, split, checks",
    ]),
    # the typo'd key is left out and the rest of the recipe is still checked (here: its trainer)
    ("unknown-recipe-key", add("recipes:\n  r:\n    trainer: qlora\n    slice: text_dense\n    epochs: 3\n"), [
        "spec.yaml:25:14: recipes.r.trainer: unknown trainer 'qlora'; run 'featurekit plugins' to list the installed trainers",
        "spec.yaml:27:5: recipes.r.epochs: unknown key 'epochs'; valid keys: trainer, slice, split, columns, params, output, eval, table",
    ]),
    ("wrong-type-tier", replace("    extractor: text.length\n", "    tier: heavy\n    extractor: text.length\n"), [
        "spec.yaml:12:11: features.question_length.tier: input should be 1, 2 or 3 (got 'heavy')",
    ]),
    ("wrong-type-inputs", replace("    inputs: {text: question}\n  ocr", "    inputs: question\n  ocr"), [
        "spec.yaml:13:13: features.question_length.inputs: input should be a valid dictionary (got 'question')",
    ]),
    ("missing-name", replace("name: textvqa-test\n", ""), [
        "spec.yaml:1:1: name: missing required key",
    ]),
    ("missing-extractor", replace("    extractor: text.length\n", ""), [
        "spec.yaml:12:5: features.question_length.extractor: missing required key",
    ]),
    ("unknown-extractor", replace("extractor: text.length", "extractor: text.lenght"), [
        "spec.yaml:12:16: features.question_length.extractor: unknown extractor 'text.lenght'; did you mean 'text.length'?",
    ]),
    ("unknown-extractor-plugin", replace("extractor: text.length", "extractor: acme.vowels"), [
        "spec.yaml:12:16: features.question_length.extractor: unknown extractor 'acme.vowels'; run 'featurekit plugins' to list the installed extractors",
    ]),
    ("bad-params", replace("    inputs: {text: question}\n  ocr", "    inputs: {text: question}\n"
                                                                    "    params: {lowercase: true}\n  ocr"), [
        "spec.yaml:14:14: features.question_length.params.lowercase: unknown key 'lowercase'",
    ]),
    ("unknown-column", replace("inputs: {text: question}\n  ocr", "inputs: {text: questoin}\n  ocr"), [
        "spec.yaml:13:20: features.question_length.inputs.text: unknown column 'questoin': not in the table, the source or any feature's outputs; did you mean 'question' or 'question_id' or 'question_type'?",
    ]),
    ("unknown-input-name", replace("inputs: {text: question}\n  ocr", "inputs: {txt: question}\n  ocr"), [
        "spec.yaml:13:13: features.question_length.inputs: text.length needs input 'text' (string); add 'text: <column>'",
        "spec.yaml:13:14: features.question_length.inputs.txt: text.length has no input 'txt'; its inputs: text",
    ]),
    ("type-mismatch", replace("inputs: {items: ocr_tokens}", "inputs: {items: question}"), [
        "spec.yaml:16:21: features.ocr_token_count.inputs.items: type mismatch: column 'question' is string, but text.count input 'items' expects list",
    ]),
    ("type-mismatch-feature", replace("inputs: {items: ocr_tokens}", "inputs: {items: question_length}"), [
        "spec.yaml:16:21: features.ocr_token_count.inputs.items: type mismatch: column 'question_length' is int32, but text.count input 'items' expects list",
    ]),
    ("cycle-of-two", add("  a:\n    where: \"b_len > 1\"\n").replace(
        "features:\n", "features:\n  a_len:\n    extractor: text.length\n    inputs: {text: b_type}\n"
                       "  b_type:\n    extractor: text.question_type\n    inputs: {text: a_type}\n"
                       "  a_type:\n    extractor: text.question_type\n    inputs: {text: b_type}\n"), [
        "spec.yaml:14:3: features.b_type: dependency cycle: b_type -> a_type -> b_type; break it",
        "spec.yaml:33:12: slices.a.where: unknown column 'b_len': not in the table, the source or any feature's outputs; did you mean 'a_len'?",
    ]),
    ("cycle-of-three", replace("features:\n", "features:\n  one:\n    extractor: text.question_type\n"
                               "    inputs: {text: three}\n  two:\n    extractor: text.question_type\n"
                               "    inputs: {text: one}\n  three:\n    extractor: text.question_type\n"
                               "    inputs: {text: two}\n"), [
        "spec.yaml:11:3: features.one: dependency cycle: one -> three -> two -> one; break it",
    ]),
    ("unknown-slice-in-only", replace("    inputs: {text: question}\n  ocr",
                                      "    inputs: {text: question}\n    only: dense\n  ocr"), [
        "spec.yaml:14:11: features.question_length.only: unknown slice 'dense'; slices: text_dense",
    ]),
    ("unknown-slice-in-recipe", add("recipes:\n  r:\n    trainer: qlora\n    slice: dense\n"), [
        "spec.yaml:25:14: recipes.r.trainer: unknown trainer 'qlora'; run 'featurekit plugins' to list the installed trainers",
        "spec.yaml:26:12: recipes.r.slice: unknown slice 'dense'; slices: text_dense",
    ]),
    ("unknown-column-in-where", replace('where: "ocr_token_count >= 8"', 'where: "ocr_tokens_count >= 8"'), [
        "spec.yaml:22:12: slices.text_dense.where: unknown column 'ocr_tokens_count': not in the table, the source or any feature's outputs; did you mean 'ocr_token_count' or 'ocr_tokens'?",
    ]),
    ("unsupported-version", replace("featurekit: 1\n", "featurekit: 2\n"), [
        "spec.yaml:1:13: featurekit: unsupported spec format version 2; this featurekit reads version 1",
    ]),
    ("empty-file", "", [
        "spec.yaml:1:1: (root): the file is empty; a spec starts with 'featurekit: 1'",
    ]),
    ("comments-only", "# nothing here yet\n", [
        "spec.yaml:1:1: (root): the file is empty; a spec starts with 'featurekit: 1'",
    ]),
    ("a-list", "- featurekit: 1\n- name: x\n", [
        "spec.yaml:1:1: (root): a spec is a mapping (featurekit: 1, name:, table:, ...), not a list",
    ]),
    ("bad-feature-name", replace("  question_length:\n", "  question-length:\n"), [
        "spec.yaml:11:3: features.question-length: a feature name 'question-length' must be letters, digits and _, not starting with a digit",
    ]),
    ("reserved-feature-name", replace("  question_length:\n", "  _fk_len:\n"), [
        "spec.yaml:11:3: features._fk_len: a feature name '_fk_len' starts with '_fk_', which featurekit reserves",
    ]),
    ("source-missing-key", replace("key: question_id", "key: qid"), [
        "spec.yaml:9:8: source.key: key column 'qid' is not in train.jsonl (columns: question_id, image_id, question, answer, ocr_tokens)",
    ]),
    ("split-fractions", add("    split: {by: image_id, fractions: {train: 0.9, val: 0.2}}\n"), [
        "spec.yaml:23:38: slices.text_dense.split.fractions: fractions must add up to 1, not 1.1",
    ]),
    ("several-problems", replace("featurekit: 1\n", "featurekit: 1\nowner: me\n").replace(
        "extractor: text.count", "extractor: text.cnt").replace("tier: 1", "tier: 1"), [
        "spec.yaml:2:1: owner: unknown key 'owner'; valid keys: featurekit, name, table, engine, source, features, slices, recipes, indexes, plugins, targets",
        "spec.yaml:16:16: features.ocr_token_count.extractor: unknown extractor 'text.cnt'; did you mean 'text.count' or 'text.length'?",
    ]),
]
CASES += [
    ("unknown-engine", BASE_SPEC.replace("table:\n", "engine: genva\ntable:\n"), [
        "spec.yaml:3:9: engine: unknown engine 'genva'; run 'featurekit plugins' to list the installed engines",
    ]),
    ("unknown-engine-option", BASE_SPEC.replace("table:\n", "engine: {kind: local, workers: 4}\ntable:\n"), [
        "spec.yaml:3:23: engine.workers: unknown key 'workers'; valid keys: checkpoint_seconds, max_workers, "
        "ingest_commit_rows, reuse_memory_mb",
    ]),
    # issue 20, item 7: no parenthesis the user never wrote ("found: )")
    ("where-missing-its-right-side", replace('"ocr_token_count >= 8"', '"ocr_token_count >= "'), [
        "spec.yaml:22:12: slices.text_dense.where: invalid SQL filter: cannot parse ocr_token_count >= : '>=' needs "
        "an expression after it, found the end of the expression (at character 20)",
    ]),
    # issue 21, N3: a filter that closes a parenthesis it never opened is not one expression
    ("where-closing-what-it-never-opened", replace('"ocr_token_count >= 8"', '"ocr_token_count > 1000) OR (1=1"'), [
        "spec.yaml:22:12: slices.text_dense.where: invalid SQL filter: cannot parse ocr_token_count > 1000) OR (1=1: "
        "')' closes a parenthesis that was never opened (at character 23)",
    ]),
    # issue 20, item 4: near duplicates on a 32-bit column would keep 1 row of 60
    ("near-on-int32", add("    dedupe: {near: {column: question_length, max_distance: 1}}\n"), [
        "spec.yaml:23:29: slices.text_dense.dedupe.near.column: column 'question_length' is int32; near duplicates "
        "need a 64-bit integer hash (uint64 or int64: image.dhash or image.phash give uint64)",
    ]),
    ("near-on-a-string", add("    dedupe: {near: {column: question_type, max_distance: 1}}\n"), [
        "spec.yaml:23:29: slices.text_dense.dedupe.near.column: column 'question_type' is string; near duplicates "
        "need a 64-bit integer hash (uint64 or int64: image.dhash or image.phash give uint64)",
    ]),
    ("only-slice-of-a-higher-tier", replace("  question_type:\n", "  question_type:\n    only: text_dense\n")
     .replace("  ocr_token_count:\n", "  ocr_token_count:\n    tier: 2\n"), [
        "spec.yaml:19:11: features.question_type.only: slice 'text_dense' needs tier-2 feature 'ocr_token_count', "
        "so a tier-1 feature cannot be computed only on its rows; make 'question_type' tier 2 or more",
    ]),
]
# issue 25: checks: on features and slices
QL = "    inputs: {text: question}\n  ocr_token_count:"
QT = "    extractor: text.question_type\n    inputs: {text: question}\n"
CASES += [
    ("check-unknown", replace(QL, QL.replace("\n  ocr", "\n    checks: [not_nul]\n  ocr")), [
        "spec.yaml:14:14: features.question_length.checks[0]: unknown check 'not_nul'; did you mean 'not_null'? feature checks: not_null, unique, range, accepted_values, max_null_fraction",
    ]),
    ("check-unknown-key", replace(QL, QL.replace("\n  ocr", "\n    checks: [{not_null: true, sevrity: warn}]\n  ocr")), [
        "spec.yaml:14:14: features.question_length.checks[0]: unknown check 'sevrity'; did you mean 'severity'? feature checks: not_null, unique, range, accepted_values, max_null_fraction (with severity and output)",
    ]),
    ("check-not-a-check", replace(QL, QL.replace("\n  ocr", "\n    checks: [5]\n  ocr")), [
        "spec.yaml:14:14: features.question_length.checks[0]: a check is a name or a mapping (not_null or "
        "{range: {min: 0}}), not 5",
    ]),
    ("check-two-in-one-item", replace(QL, QL.replace("\n  ocr", "\n    checks: [{not_null: true, unique: true}]\n  ocr")), [
        'spec.yaml:14:14: features.question_length.checks[0]: one check per item, not not_null, unique: write each as its own list item',
    ]),
    ("check-bad-severity", replace(QL, QL.replace("\n  ocr", "\n    checks: [{unique: , severity: fatal}]\n  ocr")), [
        "spec.yaml:14:35: features.question_length.checks[0].severity: input should be 'error' or 'warn' (got 'fatal')",
    ]),
    ("check-range-on-a-string", replace(QT, QT + "    checks: [{range: {min: 0, max: 5}}]\n"), [
        "spec.yaml:20:22: features.question_type.checks[0].range: range needs a number column; column 'question_type' is string",
    ]),
    ("check-range-upside-down", replace(QL, QL.replace("\n  ocr", "\n    checks: [{range: {min: 5, max: 0}}]\n  ocr")), [
        'spec.yaml:14:22: features.question_length.checks[0].range: range min 5 is above max 0',
    ]),
    ("check-accepted-values-wrong-type",
     replace(QL, QL.replace("\n  ocr", "\n    checks: [{accepted_values: [short, long]}]\n  ocr")), [
        "spec.yaml:14:32: features.question_length.checks[0].accepted_values: column 'question_length' is int32, so accepted_values must be integers; 'short' is not",
    ]),
    ("check-output-of-a-single-output",
     replace(QL, QL.replace("\n  ocr", "\n    checks: [{not_null: , output: x}]\n  ocr")), [
        "spec.yaml:14:35: features.question_length.checks[0].output: feature 'question_length' has one output; remove 'output'",
    ]),
    ("check-and-an-unknown-extractor", replace("extractor: text.length", "extractor: text.lenght").replace(
        QL, QL.replace("\n  ocr", "\n    checks: [not_nul]\n  ocr")), [
        "spec.yaml:12:16: features.question_length.extractor: unknown extractor 'text.lenght'; did you mean 'text.length'?",
        "spec.yaml:14:14: features.question_length.checks[0]: unknown check 'not_nul'; did you mean 'not_null'? feature checks: not_null, unique, range, accepted_values, max_null_fraction",
    ]),
    ("slice-checks", add("    split: {fractions: {train: 0.9, val: 0.1}}\n"
                         "    checks: [{min_rows: 10, split: tset}, {max_null_fraction: 0.1}, no_leak]\n"), [
        "spec.yaml:24:36: slices.text_dense.checks[0].split: slice 'text_dense' has no split 'tset'; its splits: train, val",
        "spec.yaml:24:43: slices.text_dense.checks[1]: unknown check 'max_null_fraction'; slice checks: min_rows, split_tolerance, no_leaks (with severity and split)",
        "spec.yaml:24:69: slices.text_dense.checks[2]: unknown check 'no_leak'; did you mean 'no_leaks'? slice checks: min_rows, split_tolerance, no_leaks",
    ]),
    ("slice-checks-without-split", add("    checks: [{split_tolerance: 0.05}, no_leaks, {min_rows: -1}]\n"), [
        "spec.yaml:23:32: slices.text_dense.checks[0].split_tolerance: split_tolerance needs the slice's own split: {fractions: ...}; slice 'text_dense' has none",
        "spec.yaml:23:39: slices.text_dense.checks[1].no_leaks: no_leaks needs a split: {fractions: ...}; slice 'text_dense' has none, so no row can leak across splits",
        'spec.yaml:23:60: slices.text_dense.checks[2].min_rows: input should be greater than or equal to 0 (got -1)',
    ]),
]
