#!/usr/bin/env python3
"""Maps of one table by pelt and by Python's reference implementations, scored alike.

    python bench/maps.py TABLE FEWREL.json [--pelt target/release/pelt]

Runs `pelt map` (PCA, t-SNE, UMAP) and, on the same vectors (each found entity's unit
direction with the mean removed, reduced to 50 principal components as pelt does),
scikit-learn's TSNE (perplexity 30, PCA start) and umap-learn's UMAP (15 neighbours,
min_dist 0.1). Every map is scored by the same code here: scikit-learn's trustworthiness
(10 neighbours, against the centred directions) and the k-NN label agreement (the share of
each labelled entity's 5 nearest labelled entities on the map with its label; labels are the
FewRel relation slot each entity fills most often, entities with at least 3 mentions, as
`pelt eval typing --from-fewrel` takes them). Needs numpy, safetensors, scikit-learn and
umap-learn; for measurement only.
"""

import argparse, json, os, subprocess, tempfile, time
from collections import Counter, defaultdict

import numpy as np
from safetensors.numpy import load_file
from sklearn.decomposition import PCA
from sklearn.manifold import TSNE, trustworthiness


def fewrel_labels(path, min_mentions=3):
    slots, first, seen = defaultdict(Counter), {}, 0
    for rel, examples in json.load(open(path)).items():
        for ex in examples:
            for slot, ent in (("head", ex["h"]), ("tail", ex["t"])):
                key = f"{rel}/{slot}"
                slots[ent[1]][key] += 1
                first.setdefault((ent[1], key), seen)
                seen += 1
    return {
        i: min(c, key=lambda k: (-c[k], first[(i, k)]))
        for i, c in slots.items()
        if sum(c.values()) >= min_mentions
    }


def agreement(y, labels, k=5):
    idx = [i for i, l in enumerate(labels) if l is not None]
    total = 0.0
    for i in idx:
        d = ((y[idx] - y[i]) ** 2).sum(axis=1)
        order = sorted((j for j in range(len(idx)) if idx[j] != i), key=lambda j: (d[j], idx[j]))[:k]
        total += sum(labels[idx[j]] == labels[i] for j in order) / k
    return total / len(idx)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("table")
    ap.add_argument("fewrel")
    ap.add_argument("--pelt", default="target/release/pelt")
    a = ap.parse_args()
    t = load_file(a.table)
    ids = [json.loads(l)[0] for l in bytes(t["entities"]).decode().splitlines() if l]
    rows = [i for i in range(len(ids)) if t["counts"][i] > 0 and t["sum_norms"][i] > 0]
    x = t["embeddings"][rows].astype(np.float64)
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    x -= x.mean(axis=0)
    x50 = PCA(n_components=min(50, x.shape[1]), random_state=0).fit_transform(x)
    lab = fewrel_labels(a.fewrel)
    labels = [lab.get(ids[r]) for r in rows]
    maps = {}
    with tempfile.TemporaryDirectory() as tmp:
        for m in ["pca", "tsne", "umap"]:
            out = os.path.join(tmp, f"{m}.tsv")
            t0 = time.time()
            subprocess.run([a.pelt, "map", a.table, "--method", m, "--out", out], check=True, capture_output=True)
            secs = time.time() - t0
            coords = {l.split("\t")[0]: (float(l.split("\t")[2]), float(l.split("\t")[3]))
                      for l in open(out).read().splitlines()[1:]}
            maps[f"pelt {m}"] = (np.array([coords[ids[r]] for r in rows]), secs)
    t0 = time.time()
    y = TSNE(n_components=2, perplexity=30, init="pca", random_state=0).fit_transform(x50)
    maps["scikit-learn t-SNE"] = (y, time.time() - t0)
    import umap
    t0 = time.time()
    y = umap.UMAP(n_neighbors=15, min_dist=0.1, random_state=0).fit_transform(x50)
    maps["umap-learn UMAP"] = (y, time.time() - t0)
    print(f"{len(rows)} entities, {sum(l is not None for l in labels)} labelled, {len(set(l for l in labels if l))} labels")
    print(f"{'map':<22} {'seconds':>8} {'trustworthiness@10':>19} {'label agreement@5':>18}")
    for name, (y, secs) in maps.items():
        print(f"{name:<22} {secs:>8.1f} {trustworthiness(x, y, n_neighbors=10):>19.3f} {agreement(y, labels):>18.3f}")


if __name__ == "__main__":
    main()
