"""Inter-annotator agreement of the shared summarize-from-feedback comparisons (docs/tldr-agreement.md).

Some posts (articles) of ``../shared/data/tldr-comparisons`` have the same pair of summaries judged by
several labelers. Over those pairs this prints the pairwise agreement on which summary is better (95%
Wilson interval), Krippendorff's alpha on that choice (nominal) and on the 1-9 confidence (interval),
with the numbers of pairs, judgements and labelers: :func:`rlhfkit.eval.label_agreement.label_agreement`
on the records of :func:`rlhfkit.data.tldr.load_tldr`. For comparison, Stiennon et al. 2020 report
labeler-labeler agreement of about 72-73% on TL;DR.

Usage (a few seconds, no model)::

    .venv/bin/python benchmarks/tldr_agreement.py
    .venv/bin/python benchmarks/tldr_agreement.py path/to/comparisons.jsonl.gz --json runs/agreement.json

A measurement, not a test: nothing asserts.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

from rlhfkit.data.tldr import load_tldr
from rlhfkit.eval.label_agreement import label_agreement

SHARED = Path(__file__).resolve().parents[1] / "../shared/data/tldr-comparisons"
FILES = [SHARED / "tldr-comparisons.jsonl.gz", SHARED / "cnndm-comparisons.jsonl.gz"]


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("files", nargs="*", type=Path, default=FILES, help="comparison files (default: ours)")
    parser.add_argument("--json", type=Path, help="also write the numbers to this JSON file")
    args = parser.parse_args(argv)
    results = {}
    for path in args.files:
        report = load_tldr(path)
        agreement = label_agreement(report.records)
        print(f"{path.name}: {len(report.records)} comparisons")
        print("\n".join(f"  {line}" for line in agreement.lines()))
        results[path.name] = {"comparisons": len(report.records), **dataclasses.asdict(agreement)}
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(results, indent=2) + "\n")
    return results


if __name__ == "__main__":
    main()
