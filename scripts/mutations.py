#!/usr/bin/env python
"""Mutation testing by hand list: each mutant is one deliberate bug (a file, an exact text,
its replacement) and the tests that must catch it. Each is applied alone to a copy of the
working tree, the named tests run there with a timeout, and the mutant is killed when they
fail. The working tree itself is never modified.

    nice -n 10 python scripts/mutations.py            # every mutant (CPU-heavy: minutes)
    python scripts/mutations.py --list                # ids, files and tests
    python scripts/mutations.py --only neardup-radius,vqa-loo

Prints each mutant's outcome, the survivors, and a score (killed / valid mutants). Exit code
1 when a mutant survives or a baseline run (the unmutated copy) fails. A mutant whose old text
is not found exactly once is reported as stale (the code moved: update the list).
"""
from __future__ import annotations

import argparse
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PLUGINS = ("featurekit-image", "featurekit-qwen", "featurekit-geneva")
TIMEOUT = 600


@dataclass(frozen=True)
class Mutant:
    id: str
    file: str
    old: str
    new: str
    tests: tuple[str, ...]   # test files or node ids, relative to the repository
    why: str = ""


M = Mutant
SPLIT_TEST = "tests/test_slices.py::test_near_duplicates_under_other_split_by_values_land_in_their_groups_split_across_appends"
MUTANTS: list[Mutant] = [
    # -- the seven bug classes of issue 20 ----------------------------------------------------
    M("inputkeys-first-input-only", "featurekit/planning/inputkeys.py",
      "    names = sorted(batch.column_names)\n",
      "    names = sorted(batch.column_names)[:1]\n",
      ("tests/test_input_keys.py",), "the content key covers only the first input"),
    M("inputkeys-hash-first-input-only", "featurekit/planning/inputkeys.py",
      "    for name, array in zip(names, arrays):\n",
      "    for name, array in list(zip(names, arrays))[:1]:\n",
      ("tests/test_input_keys.py",), "rows grouped on every input, but hashed on the first only"),
    M("inputkeys-null-like-empty", "featurekit/planning/inputkeys.py",
      '            yield b"\\x00"\n            continue\n',
      '            yield tag + (0).to_bytes(8, "little")\n            continue\n',
      ("tests/test_input_keys.py",), "a NULL string keyed like an empty one"),
    M("inputkeys-first-64-bytes", "featurekit/planning/inputkeys.py",
      'yield tag + (stop - start).to_bytes(8, "little") + data[start:stop]',
      'yield tag + (stop - start).to_bytes(8, "little") + data[start:min(stop, start + 64)]',
      ("tests/test_input_keys.py",), "the key covers the first 64 bytes of each value"),
    M("rowhash-lengths-only", "featurekit/ingest/rowhash.py",
      "    weighted *= data[first:last].astype(U64) + U64(1)\n",
      "    weighted *= U64(1)\n",
      ("tests/test_source_edits.py",), "the source-row hash ignores the content of strings and bytes"),
    M("neardup-radius-one-short", "featurekit/curation/neardup.py",
      "        for k in range(1, self.radius + 1):\n",
      "        for k in range(1, self.radius):\n",
      ("tests/test_neardup.py",), "band probing one bit short of its radius"),
    M("split-new-row-by-own-value", "featurekit/curation/examine.py",
      "        out[k] = old.split[int(first_old[new_labels[k]])]\n",
      "        out[k] = names[split_index([new.split_values[k]], rules.split_seed, rules.fractions)[0]]\n",
      (SPLIT_TEST,),
      "a new row joining an existing group placed by its own split.by value"),
    M("split-fresh-row-by-own-value", "featurekit/curation/examine.py",
      "            out[k] = head_split[int(new_labels[k])]\n",
      "            out[k] = names[split_index([new.split_values[k]], rules.split_seed, rules.fractions)[0]]\n",
      (SPLIT_TEST,),
      "a row of a new group placed by its own split.by value"),
    M("image-phash-is-dhash", "plugins/featurekit-image/featurekit_image/__init__.py",
      "        return imagehash.phash(img, hash_size=self.params.hash_size)\n",
      "        return imagehash.dhash(img, hash_size=self.params.hash_size)\n",
      ("plugins/featurekit-image/tests/test_image.py",), "image.phash computes dhash"),

    # -- the circular or thin tests issue 20 names --------------------------------------------
    M("question-type-one-word", "featurekit/builtin/text.py",
      '    head = " ".join(words[:2])\n', '    head = " ".join(words[:1])\n',
      ("tests/test_apply.py::test_values_equal_an_independent_computation",),
      "question_type looks at one word: 'how many' -> 'how'"),
    M("sft-supervises-the-final-newline", "plugins/featurekit-qwen/featurekit_qwen/sft.py",
      "            labels[-len(self.newline):] = [IGNORE] * len(self.newline)\n", "            pass\n",
      ("plugins/featurekit-qwen/tests/test_train.py::test_loss_from_cached_hiddens_equals_the_full_model_fed_pixels",),
      "SFT labels also supervise the newline after <|im_end|>"),
    M("sft-labels-shifted", "plugins/featurekit-qwen/featurekit_qwen/sft.py",
      "        labels = [IGNORE] * len(prompt_ids) + ids[len(prompt_ids):]\n",
      "        labels = [IGNORE] * (len(prompt_ids) + 1) + ids[len(prompt_ids) + 1:]\n",
      ("plugins/featurekit-qwen/tests/test_train.py::test_loss_from_cached_hiddens_equals_the_full_model_fed_pixels",),
      "the answer's first token is not supervised"),
    M("resume-reads-the-newest-version", "featurekit/training/runs.py",
      'version = previous["table"]["version"] if previous else ds.version',
      "version = ds.version",
      ("tests/test_training.py::test_resume_continues_the_newest_run",), "a resumed run reads rows appended since"),
    M("resume-restarts-the-clock", "featurekit/training/runs.py",
      '        manifest["started"] = previous.get("started")\n', "        pass\n",
      ("tests/test_training.py::test_resume_continues_the_newest_run",), "a resumed run forgets when it started"),
    M("resume-logs-steps-twice", "featurekit/training/runs.py",
      "            _drop_steps_from(self.dir / METRICS, step)", "            pass",
      ("tests/test_training.py::test_resume_continues_the_newest_run",), "a resumed run logs its steps again"),

    M("gpu-test-errors-without-weights", "plugins/featurekit-qwen/tests/test_qwen.py",
      "    if not torch.cuda.is_available() or not real_3b_weights_cached():\n",
      "    if not torch.cuda.is_available():\n",
      ("plugins/featurekit-qwen/tests/test_qwen.py::test_the_gpu_test_skips_without_the_3b_weights",),
      "the GPU test (a test bug) errors instead of skipping on a GPU without the 3B weights"),

    # -- the VQA metric ------------------------------------------------------------------------
    M("vqa-no-leave-one-out", "featurekit/training/vqa.py",
      "    scores = [min(1.0, (matches - hit) / HUMANS_FOR_FULL_CREDIT) for hit in hits]\n",
      "    scores = [min(1.0, matches / HUMANS_FOR_FULL_CREDIT) for hit in hits]\n",
      ("tests/test_vqa.py",), "min(matches / 3, 1) without the leave-one-out subsets"),
    M("vqa-punctuation-always-a-space", "featurekit/training/vqa.py",
      '        if delete or (mark + " ") in text or (" " + mark) in text:\n', "        if delete:\n",
      ("tests/test_vqa.py",), "punctuation beside a space becomes a space instead of going"),
    M("vqa-comma-between-digits-ignored", "featurekit/training/vqa.py",
      "    delete = _COMMA_BETWEEN_DIGITS.search(text) is not None\n", "    delete = False\n",
      ("tests/test_vqa.py",), "1,000 -> '1 000'"),
    M("vqa-decimal-points-dropped", "featurekit/training/vqa.py",
      '_PERIOD_NOT_DECIMAL = re.compile(r"(?!<=\\d)(\\.)(?!\\d)")', '_PERIOD_NOT_DECIMAL = re.compile(r"(\\.)")',
      ("tests/test_vqa.py",), "2.5 -> 25"),
    M("vqa-every-period-stripped", "featurekit/training/vqa.py",
      "count=MAX_PERIODS_STRIPPED)", "count=0)", ("tests/test_vqa.py",), "more than the reference's 32 periods"),
    M("vqa-article-a-kept", "featurekit/training/vqa.py",
      'ARTICLES = frozenset({"a", "an", "the"})', 'ARTICLES = frozenset({"an", "the"})',
      ("tests/test_vqa.py",), "'a dog' != 'dog'"),
    M("vqa-none-is-not-zero", "featurekit/training/vqa.py",
      'NUMBER_WORDS = {"none": "0", ', "NUMBER_WORDS = {", ("tests/test_vqa.py",), "'none' stays a word"),
    M("vqa-contractions-ignored", "featurekit/training/vqa.py",
      "    words = [CONTRACTIONS.get(w, w) for w in words if w not in ARTICLES]\n",
      "    words = [w for w in words if w not in ARTICLES]\n", ("tests/test_vqa.py",), "'dont' != \"don't\""),
    M("vqa-reference-string-unnormalized", "featurekit/training/vqa.py",
      "        return 1.0 if normalize_answer(answers) == predicted else 0.0\n",
      "        return 1.0 if answers == prediction else 0.0\n", ("tests/test_vqa.py",),
      "a single reference answer compared raw"),

    # -- near duplicates and splits ------------------------------------------------------------
    M("neardup-distance-exclusive", "featurekit/curation/neardup.py",
      "        close = hamming(pert[pi], look[lj]) <= max_distance\n",
      "        close = hamming(pert[pi], look[lj]) < max_distance\n", ("tests/test_neardup.py",),
      "pairs at exactly max_distance are missed"),
    M("neardup-plan-radius-too-small", "featurekit/curation/neardup.py",
      "        r = max_distance // m\n", "        r = max(0, max_distance // m - 1)\n", ("tests/test_neardup.py",),
      "the planner's pigeonhole radius one band short"),
    M("neardup-self-pairs-twice", "featurekit/curation/neardup.py",
      "            keep = pi < lj\n", "            keep = pi != lj\n", ("tests/test_neardup.py",),
      "a self join returns (i, j) and (j, i)"),
    M("neardup-pairs-of-several-bands-twice", "featurekit/curation/neardup.py",
      "    key = np.unique(i.astype(np.int64) * len(right) + j.astype(np.int64))\n",
      "    key = i.astype(np.int64) * len(right) + j.astype(np.int64)\n",
      ("tests/test_neardup.py",), "a pair found through several bands is returned once per band"),
    M("dedupe-ignores-by", "featurekit/curation/examine.py",
      "            same = codes[i] == codes[j]\n", "            same = np.ones(len(i), bool)\n",
      ("tests/test_slices.py::test_membership_keepers_and_splits_equal_an_independent_computation",), "near duplicates with different dedupe.by values removed"),
    M("split-seed-ignored", "featurekit/curation/split.py",
      "    return json.dumps([seed, value], sort_keys=True, default=str)\n",
      "    return json.dumps([0, value], sort_keys=True, default=str)\n",
      ("tests/test_slices.py::test_membership_keepers_and_splits_equal_an_independent_computation",),
      "split.seed does not change the split"),

    M("split-int-payload-spacing", "featurekit/curation/split.py",
      '        return f"[{seed}, {value}]"', '        return f"[{seed},{value}]"',
      ("tests/test_slices.py::test_a_split_value_hashes_as_the_json_of_seed_and_value",),
      "an integer split value hashed unlike its JSON (every int-keyed split moves)"),
    M("dedupe-exact-reported-as-near", "featurekit/curation/examine.py",
      "        near_removed = ~kept & (all_hashes[keepers] != new.hashes)\n", "        near_removed = ~kept\n",
      (SPLIT_TEST,), "exact duplicates recorded as near duplicates"),

    # -- the source-row hash and input keys ----------------------------------------------------
    M("rowhash-column-names-ignored", "featurekit/ingest/rowhash.py",
      '            contrib = _mix(h ^ _salt("column:" + name))\n', "            contrib = _mix(h)\n",
      ("tests/test_source_edits.py",), "values swapped between two columns are not seen"),
    M("rowhash-null-contributes", "featurekit/ingest/rowhash.py",
      "            contrib[_nulls(array)] = U64(0)\n", "            pass\n", ("tests/test_source_edits.py",),
      "a column added as NULL changes every old row's hash"),
    M("rowhash-list-order-ignored", "featurekit/ingest/rowhash.py",
      "    weighted = _weights(_positions(offsets, lengths, len(items)))\n",
      "    weighted = np.ones(len(items), dtype=U64)\n", ("tests/test_source_edits.py",),
      "list items swapped are not seen"),
    M("rowhash-position-table-wraps", "featurekit/ingest/rowhash.py",
      "        weights ^= _mix((position >> 16).astype(U64)) << U64(1)\n", "        pass\n",
      ("tests/test_source_edits.py",), "bytes 65,536 apart weigh the same"),
    M("rowhash-change-not-compared", "featurekit/ingest/prepare.py",
      "pc.and_(known, pc.not_equal(value_hash, now))", "pc.and_(known, pc.equal(value_hash, pc.scalar('')))",
      ("tests/test_source_edits.py",), "ingest never compares the stored row hash"),
    M("inputkeys-salt-ignored", "featurekit/planning/inputkeys.py",
      '    seed = hashlib.blake2b(salt.encode() + b"\\x00", digest_size=DIGEST)\n',
      '    seed = hashlib.blake2b(b"\\x00", digest_size=DIGEST)\n', ("tests/test_input_keys.py",),
      "a key outlives the definition it was computed for"),
    M("inputkeys-null-grouped-with-a-value", "featurekit/planning/inputkeys.py",
      "    codes = pc.fill_null(encoded.indices, k)", "    codes = pc.fill_null(encoded.indices, 0)",
      ("tests/test_input_keys.py",), "rows grouped before hashing: a NULL in the first value's group"),

    # -- extractors ----------------------------------------------------------------------------
    M("word-count-empty-is-one", "featurekit/builtin/text.py",
      "        return pc.if_else(pc.equal(pc.utf8_length(text), 0), 0, counts).cast(pa.int32())\n",
      "        return counts.cast(pa.int32())\n", ("tests/test_text_extractors.py",), "'' counts one word"),
    M("dhash-size-ignored", "plugins/featurekit-image/featurekit_image/__init__.py",
      "        return imagehash.dhash(img, hash_size=self.params.hash_size)\n",
      "        return imagehash.dhash(img)\n", ("plugins/featurekit-image/tests/test_image.py",),
      "hash_size is ignored"),
]


def _copy_tree(dest: Path) -> None:
    """The working tree as it is now (tracked and untracked files, not ignored ones)."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for rel in filter(None, listed):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)


def _env(tree: Path) -> dict[str, str]:
    """The copy's packages first on the path (the editable installs' finders come after it)."""
    paths = [str(tree)] + [str(tree / "plugins" / p) for p in PLUGINS]
    env = {k: v for k, v in os.environ.items() if not k.startswith("FEATUREKIT_")}
    env.update(PYTHONPATH=os.pathsep.join(paths + [env.get("PYTHONPATH", "")]).rstrip(os.pathsep),
               PYTHONDONTWRITEBYTECODE="1", HF_HUB_OFFLINE="1", LANCE_LOG="error")
    return env


def _run_tests(tree: Path, tests: tuple[str, ...], timeout: int) -> tuple[str, float, str]:
    """('pass' | 'fail' | 'timeout' | 'error N', seconds, tail of the output)."""
    cmd = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
    started = time.perf_counter()
    try:
        proc = subprocess.run(cmd, cwd=tree, env=_env(tree), capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        out = (exc.stdout or b"").decode() if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return "timeout", time.perf_counter() - started, out[-1500:]
    # 1: a test failed; anything else (2: collection error, 3/4: pytest broke) is not a clean kill
    status = "pass" if proc.returncode == 0 else "fail" if proc.returncode == 1 else f"error {proc.returncode}"
    return status, time.perf_counter() - started, (proc.stdout + proc.stderr)[-1500:]


def _check_imports_the_copy(tree: Path) -> None:
    code = "import featurekit, featurekit_image, featurekit_qwen; print(featurekit.__file__); " \
           "print(featurekit_image.__file__); print(featurekit_qwen.__file__)"
    out = subprocess.run([sys.executable, "-c", code], cwd=tree, env=_env(tree), capture_output=True, text=True,
                         check=True).stdout.split()
    for path in out:
        if not Path(path).resolve().is_relative_to(tree.resolve()):
            raise SystemExit(f"the copy does not shadow the installed package: {path}")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--only", help="comma-separated mutant ids")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--timeout", type=int, default=TIMEOUT, help="seconds per test run")
    ap.add_argument("--keep", action="store_true", help="keep the copy of the tree (its path is printed)")
    args = ap.parse_args(argv)
    ids = [m.id for m in MUTANTS]
    assert len(ids) == len(set(ids)), "duplicate mutant ids"
    chosen = MUTANTS
    if args.only:
        wanted = set(args.only.split(","))
        unknown = wanted - set(ids)
        if unknown:
            raise SystemExit(f"unknown mutant ids: {', '.join(sorted(unknown))}")
        chosen = [m for m in MUTANTS if m.id in wanted]
    if args.list:
        for m in chosen:
            print(f"{m.id:40} {m.file}\n{'':40} {m.why}\n{'':40} tests: {' '.join(m.tests)}")
        print(f"{len(chosen)} mutants")
        return 0

    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # a kill still removes the copy
    tree = Path(tempfile.mkdtemp(prefix="featurekit-mutants-"))
    try:
        _copy_tree(tree)
        _check_imports_the_copy(tree)
        print(f"copy of the working tree: {tree}", flush=True)
        baseline: dict[tuple[str, ...], str] = {}
        results: dict[str, str] = {}
        for m in chosen:
            path = tree / m.file
            original = path.read_bytes()
            text = original.decode()
            count = text.count(m.old)
            if count != 1:
                results[m.id] = f"stale (old text found {count} times)"
                print(f"STALE    {m.id}: old text found {count} times in {m.file}", flush=True)
                continue
            if m.tests not in baseline:
                status, secs, tail = _run_tests(tree, m.tests, args.timeout)
                baseline[m.tests] = status
                if status != "pass":
                    print(f"BASELINE {' '.join(m.tests)}: {status} unmutated ({secs:.0f}s)\n{tail}", flush=True)
            if baseline[m.tests] != "pass":
                results[m.id] = "invalid (its tests fail unmutated)"
                continue
            try:
                path.write_text(text.replace(m.old, m.new))
                status, secs, tail = _run_tests(tree, m.tests, args.timeout)
            finally:
                path.write_bytes(original)
            assert path.read_bytes() == original, f"{m.file} not restored"
            results[m.id] = "SURVIVED" if status == "pass" else "killed"
            print(f"{results[m.id]:8} {m.id} ({secs:.0f}s, {status})", flush=True)
        valid = [k for k, v in results.items() if v in ("killed", "SURVIVED")]
        killed = [k for k in valid if results[k] == "killed"]
        survivors = [k for k in valid if results[k] == "SURVIVED"]
        broken = [k for k, v in results.items() if k not in valid]
        print()
        for k in survivors:
            m = next(x for x in MUTANTS if x.id == k)
            print(f"survived: {k}: {m.why} ({m.file})")
        for k in broken:
            print(f"not run: {k}: {results[k]}")
        print(f"mutation score: {len(killed)}/{len(valid)} killed"
              + (f" ({len(broken)} not run)" if broken else ""))
        return 0 if not survivors and not broken else 1
    finally:
        if args.keep:
            print(f"kept: {tree}")
        else:
            shutil.rmtree(tree, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
