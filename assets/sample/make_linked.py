#!/usr/bin/env python3
"""Writes pubmed-linked.jsonl from FewRel's pubmed_unsupervised.json (MIT, see LICENSE-FewRel).

    python3 assets/sample/make_linked.py path/to/pubmed_unsupervised.json

Each example's tokens joined by single spaces is the text (as in pubmed.txt); its `h` and `t`
token spans become links in code points. Exact duplicate sentences are written once, with the
links of all their copies (identical spans kept once; a span overlapping another is left out).
"""
import json
import sys

examples = json.load(open(sys.argv[1], encoding="utf-8"))
order, links = [], {}
for ex in examples:
    toks = ex["tokens"]
    text = " ".join(toks)
    starts, pos = [], 0
    for t in toks:
        starts.append(pos)
        pos += len(t) + 1
    if text not in links:
        order.append(text)
        links[text] = []
    for ent in (ex["h"], ex["t"]):
        for grp in ent[2]:
            span = (starts[min(grp)], starts[max(grp)] + len(toks[max(grp)]), ent[1])
            if span not in links[text]:
                links[text].append(span)
with open("assets/sample/pubmed-linked.jsonl", "w", encoding="utf-8", newline="\n") as f:
    for text in order:
        kept = []
        for s, e, i in sorted(links[text]):
            if all(e <= a or s >= b for a, b, _ in kept):
                kept.append((s, e, i))
        rec = {"text": text, "links": [{"start": s, "end": e, "id": i} for s, e, i in kept]}
        f.write(json.dumps(rec, ensure_ascii=False) + "\n")
print(len(order), "sentences")
